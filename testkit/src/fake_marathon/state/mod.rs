//! The fake's model of Marathon: apps by absolute id, groups, and deployments that lock the apps they
//! touch until they finish. Each operation returns the status, body and headers Marathon 1.10 would.
//!
//! What is modelled, after `AppsResource`, `GroupsResource` and `MarathonExceptionMapper` (see
//! `../shared/reference/README.md`): a stored app carries Marathon's defaults and a `version`; a change
//! starts a deployment listed in `/v2/deployments` until it finishes; a change to an app a running
//! deployment touches is refused with 409 unless `force=true`, which cancels that deployment; `PUT` of a
//! group replaces the group's apps; validation failures are 422 with `details`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

mod apps;
mod resources;

/// An answer from the model.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    fn new(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn message(status: u16, message: String) -> Answer {
        Answer::new(status, json!({ "message": message }))
    }
}

/// A deployment: listed until `finishes_at` (never, when stuck).
#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub affected_apps: Vec<String>,
    /// (action, app id): StartApplication, RestartApplication, StopApplication, ScaleApplication.
    pub actions: Vec<(String, String)>,
    pub finishes_at: Option<Instant>,
}

/// Everything the fake Marathon stores.
#[derive(Default)]
pub struct State {
    /// Stored apps by absolute id, as `GET /v2/apps/{id}` returns them.
    pub apps: BTreeMap<String, Value>,
    /// Groups created explicitly (a group also exists while any app lives under it).
    pub groups: BTreeSet<String>,
    /// Deployments still running (finished ones are dropped on the next request).
    pub deployments: Vec<Deployment>,
    /// What `/v2/leader` answers (`host:port`).
    pub leader: String,
    counter: u64,
}

/// `/a/b/` or `a/b` → `/a/b`; the root is `/`.
pub fn normalize_id(id: &str) -> String {
    let trimmed = id.trim_matches('/');
    format!("/{trimmed}")
}

/// Whether `id` is `group` or lies under it.
fn under(id: &str, group: &str) -> bool {
    group == "/" || id == group || id.starts_with(&format!("{group}/"))
}

/// One path segment as Marathon accepts it (`PathId` validation).
fn valid_segment(s: &str) -> bool {
    s.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    })
}

impl State {
    fn next_version(&mut self) -> String {
        self.counter += 1;
        let c = self.counter;
        format!(
            "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
            (c / 3_600_000) % 24,
            (c / 60_000) % 60,
            (c / 1000) % 60,
            c % 1000
        )
    }

    fn next_deployment_id(&mut self) -> String {
        self.counter += 1;
        format!("5ed4c0c5-9ff8-4a6f-a0cd-{:012x}", self.counter)
    }

    /// Drops the deployments that have finished by `now`.
    pub fn tick(&mut self, now: Instant) {
        self.deployments
            .retain(|d| d.finishes_at.is_none_or(|t| t > now));
    }

    /// Whether a group exists: explicitly created, the root, or holding apps.
    pub fn group_exists(&self, group: &str) -> bool {
        group == "/"
            || self.groups.contains(group)
            || self.apps.keys().any(|a| under(a, group) && a != group)
    }

    /// Deployments that lock any of `ids`.
    fn locks(&self, ids: &[String]) -> Vec<String> {
        self.deployments
            .iter()
            .filter(|d| d.affected_apps.iter().any(|a| ids.contains(a)))
            .map(|d| d.id.clone())
            .collect()
    }

    /// The 409 Marathon sends for a locked app, or None after cancelling the locks when `force`.
    fn check_locks(&mut self, ids: &[String], force: bool) -> Option<Answer> {
        let locks = self.locks(ids);
        if locks.is_empty() {
            return None;
        }
        if force {
            self.deployments.retain(|d| !locks.contains(&d.id));
            return None;
        }
        Some(Answer::new(
            409,
            json!({
                "message": format!(
                    "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'."
                ),
                "deployments": locks.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            }),
        ))
    }

    fn start_deployment(
        &mut self,
        actions: Vec<(String, String)>,
        duration: Duration,
        stuck: bool,
    ) -> (String, String) {
        let id = self.next_deployment_id();
        let version = self.next_version();
        let finishes_at = if actions.is_empty() {
            Some(Instant::now())
        } else if stuck {
            None
        } else {
            Some(Instant::now() + duration)
        };
        self.deployments.push(Deployment {
            id: id.clone(),
            version: version.clone(),
            affected_apps: actions.iter().map(|(_, a)| a.clone()).collect(),
            actions,
            finishes_at,
        });
        (id, version)
    }

    fn deployment_answer(status: u16, id: String, version: String) -> Answer {
        let mut a = Answer::new(status, json!({ "deploymentId": id, "version": version }));
        a.headers.push(("Marathon-Deployment-Id".into(), id));
        a
    }
}

/// The group an id lives in (`/a/b` → `/a`, `/a` → `/`).
fn parent(id: &str) -> String {
    match id.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => id[..i].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_parents() {
        assert_eq!(normalize_id("a/b/"), "/a/b");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert!(valid_segment("micro-demo"));
        assert!(!valid_segment("Bad_Name"));
        assert!(!valid_segment("-x"));
    }

    #[test]
    fn a_running_deployment_locks_its_apps_until_forced() {
        let mut s = State::default();
        let body = json!({"id": "/g", "apps": [{"id": "/g/a", "cmd": "sleep 1"}]});
        let a = s.put_group("/g", &body, false, Duration::from_secs(60), false);
        assert_eq!(a.status, 200);
        let changed = json!({"id": "/g", "apps": [{"id": "/g/a", "cmd": "sleep 2"}]});
        assert_eq!(
            s.put_group("/g", &changed, false, Duration::ZERO, false)
                .status,
            409
        );
        assert_eq!(
            s.put_group("/g", &changed, true, Duration::ZERO, false)
                .status,
            200
        );
    }
}
