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

    /// Validates an app as Marathon's `AppDefinition` validator would (the parts the installer can get
    /// wrong); returns `details` entries.
    fn validate_app(app: &Value, path: &str, group: Option<&str>) -> Vec<Value> {
        let mut details = Vec::new();
        let mut err = |p: &str, e: String| {
            details.push(json!({ "path": format!("{path}{p}"), "errors": [e] }));
        };
        let Some(obj) = app.as_object() else {
            err("", "error.expected.jsobject".into());
            return details;
        };
        match obj.get("id").and_then(Value::as_str) {
            None => err("/id", "error.path.missing".into()),
            Some(id) => {
                let abs = match group {
                    Some(g) if !id.starts_with('/') => normalize_id(&format!("{g}/{id}")),
                    _ => normalize_id(id),
                };
                if !abs.trim_start_matches('/').split('/').all(valid_segment) {
                    err(
                        "/id",
                        "must fully match regular expression '^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])|(\\.|\\.\\.)$'".into(),
                    );
                }
                if let Some(g) = group
                    && !(under(&abs, g) && abs != g)
                {
                    err(
                        "/id",
                        format!("identifier {abs} is not child of {g}. Hint: use relative paths."),
                    );
                }
            }
        }
        if obj.contains_key("cmd") && obj.contains_key("args") {
            err(
                "",
                "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
                    .into(),
            );
        }
        if !obj.contains_key("cmd") && !obj.contains_key("args") && !obj.contains_key("container") {
            err(
                "",
                "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
                    .into(),
            );
        }
        if let Some(c) = obj.get("container") {
            let docker = c.get("type").and_then(Value::as_str).unwrap_or("DOCKER") == "DOCKER";
            if docker
                && c.pointer("/docker/image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                err("/container/docker/image", "must not be empty".into());
            }
        }
        for (field, min) in [("instances", 0.0), ("cpus", 0.0), ("mem", 0.0)] {
            if let Some(v) = obj.get(field)
                && v.as_f64().is_none_or(|n| n < min)
            {
                err(&format!("/{field}"), "got -1, expected 0 or more".into());
            }
        }
        if let Some(env) = obj.get("env").and_then(Value::as_object) {
            for (k, v) in env {
                if let Some(s) = v.get("secret").and_then(Value::as_str)
                    && app.pointer(&format!("/secrets/{s}")).is_none()
                {
                    err(
                        &format!("/env/{k}"),
                        format!("references an undefined secret named '{s}'"),
                    );
                }
            }
        }
        details
    }

    /// An app with Marathon's defaults filled in, as it would be stored.
    fn stored(&mut self, mut app: Value, id: &str, version: &str) -> Value {
        let obj = app.as_object_mut().expect("validated as an object");
        obj.insert("id".into(), json!(id));
        let defaults = [
            ("instances", json!(1)),
            ("cpus", json!(1.0)),
            ("mem", json!(128.0)),
            ("disk", json!(0)),
            ("gpus", json!(0)),
            ("env", json!({})),
            ("labels", json!({})),
            ("constraints", json!([])),
            ("backoffSeconds", json!(1)),
            ("backoffFactor", json!(1.15)),
            ("maxLaunchDelaySeconds", json!(300)),
            ("requirePorts", json!(false)),
            ("killSelection", json!("YOUNGEST_FIRST")),
            ("dependencies", json!([])),
            ("healthChecks", json!([])),
            ("fetch", json!([])),
            ("secrets", json!({})),
            (
                "upgradeStrategy",
                json!({"minimumHealthCapacity": 1, "maximumOverCapacity": 1}),
            ),
            (
                "unreachableStrategy",
                json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}),
            ),
        ];
        for (k, v) in defaults {
            obj.entry(k).or_insert(v);
        }
        if let Some(d) = obj
            .get_mut("container")
            .and_then(|c| c.get_mut("docker"))
            .and_then(Value::as_object_mut)
        {
            d.entry("forcePullImage").or_insert(json!(false));
            d.entry("privileged").or_insert(json!(false));
            d.entry("parameters").or_insert(json!([]));
        }
        if let Some(c) = obj.get_mut("container").and_then(Value::as_object_mut) {
            c.entry("volumes").or_insert(json!([]));
            c.entry("type").or_insert(json!("DOCKER"));
        }
        obj.insert("version".into(), json!(version));
        obj.insert(
            "versionInfo".into(),
            json!({"lastScalingAt": version, "lastConfigChangeAt": version}),
        );
        app
    }

    /// The stored app without the fields Marathon sets itself, to tell a real change from a re-send.
    fn config_of(app: &Value) -> Value {
        let mut a = app.clone();
        if let Some(o) = a.as_object_mut() {
            o.remove("version");
            o.remove("versionInfo");
        }
        a
    }

    fn with_counts(app: &Value) -> Value {
        let mut a = app.clone();
        if let Some(o) = a.as_object_mut() {
            let n = o.get("instances").cloned().unwrap_or(json!(0));
            o.insert("tasksRunning".into(), n);
            o.insert("tasksStaged".into(), json!(0));
            o.insert("tasksHealthy".into(), json!(0));
            o.insert("tasksUnhealthy".into(), json!(0));
            o.insert("deployments".into(), json!([]));
        }
        a
    }

    /// `GET /v2/groups/{id}`.
    pub fn get_group(&self, id: &str) -> Answer {
        if !self.group_exists(id) {
            return Answer::message(404, format!("Group '{id}' does not exist"));
        }
        Answer::new(200, self.group_json(id))
    }

    fn group_json(&self, id: &str) -> Value {
        let apps: Vec<Value> = self
            .apps
            .iter()
            .filter(|(a, _)| parent(a) == id)
            .map(|(_, v)| Self::with_counts(v))
            .collect();
        let mut children: BTreeSet<String> = self
            .groups
            .iter()
            .filter(|g| parent(g) == id)
            .cloned()
            .collect();
        for a in self.apps.keys() {
            let mut p = parent(a);
            while p != "/" && p != id {
                if parent(&p) == id {
                    children.insert(p.clone());
                }
                p = parent(&p);
            }
        }
        let groups: Vec<Value> = children.iter().map(|g| self.group_json(g)).collect();
        json!({
            "id": id,
            "apps": apps,
            "groups": groups,
            "pods": [],
            "dependencies": [],
            "version": "2026-01-01T00:00:00.000Z",
            "enforceRole": false,
        })
    }

    /// `PUT /v2/groups/{id}` (creates or updates; the body's apps replace the group's apps).
    pub fn put_group(
        &mut self,
        id: &str,
        body: &Value,
        force: bool,
        duration: Duration,
        stuck: bool,
    ) -> Answer {
        let Some(obj) = body.as_object() else {
            return Answer::new(
                400,
                json!({"message": "Invalid JSON", "details": [{"path": "", "errors": ["error.expected.jsobject"]}]}),
            );
        };
        let empty = Vec::new();
        let apps = match obj.get("apps") {
            None => &empty,
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Answer::new(
                    400,
                    json!({"message": "Invalid JSON", "details": [{"path": "/apps", "errors": ["error.expected.jsarray"]}]}),
                );
            }
        };
        let mut details = Vec::new();
        if let Some(bid) = obj.get("id").and_then(Value::as_str)
            && normalize_id(bid) != id
            && !bid.is_empty()
        {
            details.push(json!({"path": "/id", "errors": [format!("the id {bid} in the body does not match the path {id}")]}));
        }
        for (i, a) in apps.iter().enumerate() {
            details.extend(Self::validate_app(a, &format!("/apps({i})"), Some(id)));
        }
        if !details.is_empty() {
            return Answer::new(
                422,
                json!({"message": "Object is not valid", "details": details}),
            );
        }
        let mut new: BTreeMap<String, Value> = BTreeMap::new();
        for a in apps {
            let raw = a["id"].as_str().unwrap_or_default();
            let abs = if raw.starts_with('/') {
                normalize_id(raw)
            } else {
                normalize_id(&format!("{id}/{raw}"))
            };
            new.insert(abs, a.clone());
        }
        let version = self.next_version();
        let mut actions = Vec::new();
        let mut stored = BTreeMap::new();
        for (abs, a) in new {
            let s = self.stored(a, &abs, &version);
            match self.apps.get(&abs) {
                None => actions.push(("StartApplication".to_string(), abs.clone())),
                Some(old) if Self::config_of(old) != Self::config_of(&s) => {
                    actions.push(("RestartApplication".to_string(), abs.clone()))
                }
                Some(_) => {}
            }
            stored.insert(abs, s);
        }
        if obj.contains_key("apps") {
            for old in self.apps.keys().filter(|a| parent(a) == id) {
                if !stored.contains_key(old) {
                    actions.push(("StopApplication".to_string(), old.clone()));
                }
            }
        }
        let touched: Vec<String> = actions.iter().map(|(_, a)| a.clone()).collect();
        if let Some(conflict) = self.check_locks(&touched, force) {
            return conflict;
        }
        for (action, app) in &actions {
            match action.as_str() {
                "StopApplication" => {
                    self.apps.remove(app);
                }
                _ => {
                    self.apps.insert(app.clone(), stored[app].clone());
                }
            }
        }
        if id != "/" {
            self.groups.insert(id.to_string());
        }
        let (dep, ver) = self.start_deployment(actions, duration, stuck);
        Self::deployment_answer(200, dep, ver)
    }

    /// `POST /v2/groups`: creates, or 409 when the group exists.
    pub fn post_group(&mut self, body: &Value, duration: Duration, stuck: bool) -> Answer {
        let id = normalize_id(body.get("id").and_then(Value::as_str).unwrap_or("/"));
        if self.group_exists(&id) {
            return Answer::message(
                409,
                format!("Group {id} is already created. Use PUT to change this group."),
            );
        }
        let mut a = self.put_group(&id, body, false, duration, stuck);
        if a.status == 200 {
            a.status = 201;
        }
        a
    }

    /// `DELETE /v2/groups/{id}` (`force` defaults to false).
    pub fn delete_group(
        &mut self,
        id: &str,
        force: bool,
        duration: Duration,
        stuck: bool,
    ) -> Answer {
        if id == "/" || !self.group_exists(id) {
            return Answer::message(404, format!("Group '{id}' does not exist"));
        }
        let doomed: Vec<String> = self.apps.keys().filter(|a| under(a, id)).cloned().collect();
        if let Some(conflict) = self.check_locks(&doomed, force) {
            return conflict;
        }
        for a in &doomed {
            self.apps.remove(a);
        }
        self.groups.retain(|g| !under(g, id));
        let actions = doomed
            .into_iter()
            .map(|a| ("StopApplication".to_string(), a))
            .collect();
        let (dep, ver) = self.start_deployment(actions, duration, stuck);
        Self::deployment_answer(200, dep, ver)
    }

    /// `GET /v2/apps`.
    pub fn list_apps(&self) -> Answer {
        Answer::new(
            200,
            json!({ "apps": self.apps.values().map(Self::with_counts).collect::<Vec<_>>() }),
        )
    }

    /// `GET /v2/apps/{id}`.
    pub fn get_app(&self, id: &str) -> Answer {
        match self.apps.get(id) {
            Some(a) => Answer::new(200, json!({ "app": Self::with_counts(a) })),
            None => Answer::message(404, format!("App '{id}' does not exist")),
        }
    }

    /// `PUT /v2/apps/{id}`: creates (201) or updates (200, merging: `partialUpdate` defaults to true).
    pub fn put_app(
        &mut self,
        id: &str,
        body: &Value,
        force: bool,
        duration: Duration,
        stuck: bool,
    ) -> Answer {
        let Some(patch) = body.as_object() else {
            return Answer::new(400, json!({"message": "Invalid JSON", "details": []}));
        };
        let existing = self.apps.get(id).cloned();
        let mut merged: Map<String, Value> = existing
            .as_ref()
            .and_then(|a| a.as_object().cloned())
            .unwrap_or_default();
        for (k, v) in patch {
            merged.insert(k.clone(), v.clone());
        }
        merged.insert("id".into(), json!(id));
        let merged = Value::Object(merged);
        let details = Self::validate_app(&merged, "", None);
        if !details.is_empty() {
            return Answer::new(
                422,
                json!({"message": "Object is not valid", "details": details}),
            );
        }
        if let Some(conflict) = self.check_locks(&[id.to_string()], force) {
            return conflict;
        }
        let version = self.next_version();
        let only_scale = existing.is_some() && patch.keys().all(|k| k == "instances");
        let s = self.stored(merged, id, &version);
        let action = match (&existing, only_scale) {
            (None, _) => "StartApplication",
            (Some(_), true) => "ScaleApplication",
            (Some(_), false) => "RestartApplication",
        };
        self.apps.insert(id.to_string(), s);
        let (dep, ver) =
            self.start_deployment(vec![(action.into(), id.to_string())], duration, stuck);
        Self::deployment_answer(if existing.is_some() { 200 } else { 201 }, dep, ver)
    }

    /// `DELETE /v2/apps/{id}` (`force` defaults to **true** here, unlike groups).
    pub fn delete_app(&mut self, id: &str, force: bool, duration: Duration, stuck: bool) -> Answer {
        if !self.apps.contains_key(id) {
            return Answer::message(404, format!("App '{id}' does not exist"));
        }
        if let Some(conflict) = self.check_locks(&[id.to_string()], force) {
            return conflict;
        }
        self.apps.remove(id);
        let (dep, ver) = self.start_deployment(
            vec![("StopApplication".into(), id.to_string())],
            duration,
            stuck,
        );
        Self::deployment_answer(200, dep, ver)
    }

    /// `GET /v2/deployments`.
    pub fn list_deployments(&self) -> Answer {
        let list: Vec<Value> = self
            .deployments
            .iter()
            .map(|d| {
                let actions: Vec<Value> = d
                    .actions
                    .iter()
                    .map(|(action, app)| json!({"action": action, "app": app}))
                    .collect();
                let current: Vec<Value> = d
                    .actions
                    .iter()
                    .map(|(action, app)| json!({"action": action, "app": app, "readinessCheckResults": []}))
                    .collect();
                json!({
                    "id": d.id,
                    "version": d.version,
                    "affectedApps": d.affected_apps,
                    "affectedPods": [],
                    "steps": [{"actions": actions}],
                    "currentActions": current,
                    "currentStep": 1,
                    "totalSteps": 1,
                })
            })
            .collect();
        Answer::new(200, Value::Array(list))
    }

    /// `DELETE /v2/deployments/{id}` (`force=true` just forgets it; otherwise Marathon rolls back, which
    /// here also just forgets it).
    pub fn delete_deployment(&mut self, id: &str) -> Answer {
        let before = self.deployments.len();
        self.deployments.retain(|d| d.id != id);
        if before == self.deployments.len() {
            return Answer::message(404, format!("DeploymentPlan {id} does not exist"));
        }
        Answer::new(202, json!({}))
    }

    /// `GET /v2/leader`.
    pub fn leader(&self) -> Answer {
        Answer::new(200, json!({ "leader": self.leader }))
    }

    /// `GET /v2/info` (trimmed to the fields a client reads).
    pub fn info(&self) -> Answer {
        Answer::new(
            200,
            json!({
                "name": "marathon",
                "version": "1.10.26",
                "buildref": "0513cddc",
                "elected": true,
                "leader": self.leader,
                "frameworkId": "96d7da70-b731-4cfb-96a7-0ee877af615d-0000",
            }),
        )
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
