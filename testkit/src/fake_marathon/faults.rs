//! What a test asks the fake Marathon to get wrong: each fault reproduces something a real cluster does
//! (an expired token, a leader election's 503, an admin router in front of the wrong path, a deployment
//! whose tasks never start).

use std::time::Duration;

use serde_json::{Value, json};

/// A canned answer for requests that match a method and a path prefix, instead of the model's answer.
#[derive(Clone, Debug)]
pub struct Fault {
    /// `GET`, `PUT`, …; `None` matches every method.
    pub method: Option<String>,
    /// Matches paths that start with this (`/v2/groups`); `None` matches every path.
    pub path_prefix: Option<String>,
    pub status: u16,
    /// The body: JSON, or text (an HTML error page from a proxy, say).
    pub body: FaultBody,
    /// How many requests this answers before it is spent; `None` never runs out.
    pub times: Option<u32>,
}

/// The body of a faulty answer.
#[derive(Clone, Debug)]
pub enum FaultBody {
    Json(Value),
    Text(String),
}

impl Fault {
    /// Every request gets `status` with Marathon's error shape `{"message": …}`.
    pub fn always(status: u16, message: &str) -> Fault {
        Fault {
            method: None,
            path_prefix: None,
            status,
            body: FaultBody::Json(json!({ "message": message })),
            times: None,
        }
    }

    /// Only requests with this method.
    pub fn on_method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_string());
        self
    }

    /// Only requests whose path starts with `prefix`.
    pub fn on_path(mut self, prefix: &str) -> Fault {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    /// Spent after `n` answers.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// A JSON body instead of `{"message": …}`.
    pub fn with_json(mut self, body: Value) -> Fault {
        self.body = FaultBody::Json(body);
        self
    }

    /// A text body (for a proxy's HTML page).
    pub fn with_text(mut self, body: &str) -> Fault {
        self.body = FaultBody::Text(body.to_string());
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
            && self.times != Some(0)
    }
}

/// Everything the fake currently gets wrong. The default is a healthy Marathon.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Added before every answer (a slow or overloaded Marathon).
    pub delay: Duration,
    /// Canned answers, first match wins.
    pub answers: Vec<Fault>,
    /// Connections to accept and close at once without answering (a crashing proxy); counts down.
    pub drop_connections: u32,
    /// Deployments started from now on never finish (tasks that never become healthy).
    pub stuck_deployments: bool,
    /// How long a deployment stays in `/v2/deployments` before it finishes.
    pub deployment_duration: Duration,
    /// When set, every request must carry exactly this `Authorization` value, or gets 401.
    pub require_authorization: Option<String>,
    /// Non-GET requests get 403 (a valid identity without write permission).
    pub forbid_writes: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            delay: Duration::ZERO,
            answers: Vec::new(),
            drop_connections: 0,
            stuck_deployments: false,
            deployment_duration: Duration::from_millis(200),
            require_authorization: None,
            forbid_writes: false,
        }
    }
}

impl Faults {
    /// Adds a canned answer.
    pub fn answer(&mut self, fault: Fault) -> &mut Self {
        self.answers.push(fault);
        self
    }

    /// The canned answer for this request, if any, spending one use of it.
    pub(crate) fn take_answer(&mut self, method: &str, path: &str) -> Option<Fault> {
        let f = self.answers.iter_mut().find(|f| f.matches(method, path))?;
        if let Some(n) = f.times.as_mut() {
            *n -= 1;
        }
        Some(f.clone())
    }
}
