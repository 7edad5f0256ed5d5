//! The Marathon REST client: the few endpoints the installer uses, authentication, timeouts, a bounded
//! retry of transient failures, and the translation of Marathon's answers into [`MarathonError`]s that say
//! what to do.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::config::{Auth, Connection};
use super::errors::{MarathonError, UsageError};

/// Attempts for one request when the failure is transient (connection dropped or refused, 502/503/504).
const ATTEMPTS: u32 = 3;
/// The first pause between attempts; doubled each time.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A connection to one Marathon.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    request_timeout: Duration,
}

/// An answer the caller handles itself (2xx, and the 404/409 that mean "absent"/"locked").
struct Reply {
    status: StatusCode,
    body: Value,
    is_json: bool,
}

/// What a change returned: the deployment that carries it out.
#[derive(Debug, Clone)]
pub struct Started {
    pub deployment_id: String,
}

impl Client {
    /// Builds the HTTP client (CA bundle, timeouts). Reading the CA bundle is validated earlier, so an
    /// error here is about its contents.
    pub fn new(conn: &Connection) -> Result<Client, UsageError> {
        let extra = match &conn.ca_bundle {
            Some(pem) => workload::tls::certificates_from_pem(pem, "--ca-cert")
                .map_err(|e| UsageError::new(e.to_string()))?,
            None => Vec::new(),
        };
        let builder = workload::tls::http_client_builder(extra, "--ca-cert")
            .map_err(|e| UsageError::new(e.to_string()))?
            .connect_timeout(conn.connect_timeout)
            .timeout(conn.request_timeout)
            .user_agent(concat!("marathon-install/", env!("CARGO_PKG_VERSION")));
        let http = builder
            .build()
            .map_err(|e| UsageError::new(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: conn.url.clone(),
            auth: conn.auth.clone(),
            request_timeout: conn.request_timeout,
        })
    }

    /// The Marathon base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request, retrying transient failures, and returns any HTTP answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply, MarathonError> {
        let url = format!("{}{}", self.base, path);
        let mut pause = RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let mut req = self.http.request(method.clone(), &url).query(query);
            req = match &self.auth {
                Auth::None => req,
                Auth::Token(t) => req.header("Authorization", format!("token={}", t.expose())),
                Auth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
            };
            if let Some(b) = body {
                req = req.json(b);
            }
            let result = req.send().await;
            let transient = match &result {
                Ok(r) => matches!(r.status().as_u16(), 502..=504),
                Err(e) => {
                    !e.is_timeout()
                        && (e.is_connect() || e.is_request())
                        && !is_certificate_error(e)
                }
            };
            if transient && attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
                continue;
            }
            let resp = result.map_err(|e| self.transport_error(e, what))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| self.transport_error(e, what))?;
            let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
            return Ok(Reply {
                status,
                is_json: parsed.is_some(),
                body: parsed.unwrap_or_else(|| {
                    Value::String(String::from_utf8_lossy(&bytes).chars().take(200).collect())
                }),
            });
        }
    }

    fn transport_error(&self, e: reqwest::Error, what: &str) -> MarathonError {
        let detail = error_chain(&e);
        if is_certificate_error(&e) {
            MarathonError::Certificate {
                what: what.into(),
                url: self.base.clone(),
                detail,
            }
        } else if e.is_timeout() {
            MarathonError::Timeout {
                what: what.into(),
                url: self.base.clone(),
                timeout: self.request_timeout,
            }
        } else if e.is_connect() {
            MarathonError::Connect {
                what: what.into(),
                url: self.base.clone(),
                detail,
            }
        } else {
            MarathonError::Transport {
                what: what.into(),
                url: self.base.clone(),
                detail,
            }
        }
    }

    /// The error for an answer the caller did not expect.
    fn fail(&self, r: Reply, what: &str) -> MarathonError {
        let message = message_of(&r.body);
        let what = what.to_string();
        match r.status.as_u16() {
            401 => MarathonError::Unauthorized { what, message },
            403 => MarathonError::Forbidden { what, message },
            404 => MarathonError::NotMarathon {
                what,
                url: self.base.clone(),
            },
            409 => MarathonError::Locked {
                what,
                deployments: locking_deployments(&r.body),
            },
            400 | 422 => MarathonError::Invalid {
                what,
                message,
                details: details_of(&r.body),
            },
            s @ 500..=599 => MarathonError::Server {
                what,
                status: s,
                message,
            },
            s => MarathonError::Unexpected {
                what,
                status: s,
                message,
            },
        }
    }

    /// `GET /v2/groups/{id}`: the group, or None when Marathon says it does not exist.
    pub async fn get_group(&self, id: &str) -> Result<Option<Value>, MarathonError> {
        let what = format!("read group {id}");
        let r = self
            .send(Method::GET, &format!("/v2/groups{id}"), &[], None, &what)
            .await?;
        match r.status {
            s if s.is_success() && r.body.is_object() => Ok(Some(r.body)),
            StatusCode::NOT_FOUND if is_marathon_404(&r) => Ok(None),
            _ => Err(self.fail(r, &what)),
        }
    }

    /// `PUT /v2/groups/{id}`: creates or updates the group with exactly these apps.
    pub async fn put_group(
        &self,
        id: &str,
        body: &Value,
        force: bool,
    ) -> Result<Started, MarathonError> {
        let what = format!("update group {id}");
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/groups{id}"),
                query,
                Some(body),
                &what,
            )
            .await?;
        if r.status.is_success() {
            return started(&r.body).ok_or_else(|| self.fail(r, &what));
        }
        Err(self.fail(r, &what))
    }

    /// `DELETE /v2/groups/{id}`: None when it was already gone.
    pub async fn delete_group(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<Started>, MarathonError> {
        let what = format!("remove group {id}");
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        let r = self
            .send(
                Method::DELETE,
                &format!("/v2/groups{id}"),
                query,
                None,
                &what,
            )
            .await?;
        match r.status {
            s if s.is_success() => Ok(Some(started(&r.body).ok_or_else(|| self.fail(r, &what))?)),
            StatusCode::NOT_FOUND if is_marathon_404(&r) => Ok(None),
            _ => Err(self.fail(r, &what)),
        }
    }

    /// `GET /v2/deployments`.
    pub async fn deployments(&self) -> Result<Vec<Value>, MarathonError> {
        let what = "list deployments";
        let r = self
            .send(Method::GET, "/v2/deployments", &[], None, what)
            .await?;
        match (r.status.is_success(), &r.body) {
            (true, Value::Array(list)) => Ok(list.clone()),
            _ => Err(self.fail(r, what)),
        }
    }

    /// `GET /v2/leader`: the leading Marathon's `host:port`.
    pub async fn leader(&self) -> Result<String, MarathonError> {
        let what = "find the Marathon leader";
        let r = self
            .send(Method::GET, "/v2/leader", &[], None, what)
            .await?;
        match r.body.get("leader").and_then(Value::as_str) {
            Some(l) if r.status.is_success() && !l.is_empty() => Ok(l.to_string()),
            _ => Err(self.fail(r, what)),
        }
    }
}

/// Marathon's own 404 (`{"message":"Group '/x' does not exist"}`), as opposed to a proxy's or a wrong path's.
fn is_marathon_404(r: &Reply) -> bool {
    r.is_json
        && r.body
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| m.contains("does not exist"))
}

fn started(body: &Value) -> Option<Started> {
    body.get("deploymentId")
        .and_then(Value::as_str)
        .map(|id| Started {
            deployment_id: id.to_string(),
        })
}

/// Marathon's `message`, or the start of a non-JSON body.
fn message_of(body: &Value) -> String {
    match body {
        Value::String(s) if s.trim().is_empty() => "no message".to_string(),
        Value::String(s) => s.trim().to_string(),
        v => v
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string),
    }
}

/// A 422's `details` as `path: error; …`.
fn details_of(body: &Value) -> String {
    let Some(list) = body.get("details").and_then(Value::as_array) else {
        return "no details given".to_string();
    };
    let parts: Vec<String> = list
        .iter()
        .map(|d| {
            let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
            let errors: Vec<&str> = d
                .get("errors")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("{path}: {}", errors.join(", "))
        })
        .collect();
    if parts.is_empty() {
        "no details given".to_string()
    } else {
        parts.join("; ")
    }
}

/// The ids in a 409's `deployments`.
fn locking_deployments(body: &Value) -> Vec<String> {
    let ids: Vec<String> = body
        .get("deployments")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|d| d.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        vec![format!("(unnamed: {})", message_of(body))]
    } else {
        ids
    }
}

/// Whether the TLS handshake failed on the server's certificate: not transient, and fixed by --ca-cert.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    error_chain(e).contains("certificate")
}

/// The root cause of a transport error ("Connection refused (os error 111)"): reqwest's own top message
/// ("error sending request for url …") repeats the URL and hides the cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut root = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        root = c.to_string();
        cur = c.source();
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn details_and_locks_are_readable() {
        let b = json!({"message": "Object is not valid", "details": [{"path": "/apps(0)/id", "errors": ["bad id"]}]});
        assert_eq!(details_of(&b), "/apps(0)/id: bad id");
        let l = json!({"message": "locked", "deployments": [{"id": "d1"}, {"id": "d2"}]});
        assert_eq!(locking_deployments(&l), vec!["d1", "d2"]);
        assert_eq!(message_of(&json!("<html>oops</html>")), "<html>oops</html>");
    }
}
