//! The REST operations on the model: groups, apps, deployments, leader and info, each answering as
//! Marathon 1.10 does.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

impl State {
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
