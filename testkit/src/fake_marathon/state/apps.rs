//! How the fake stores an app: Marathon's validation of an app definition, its defaults, and the
//! counts and config it reports.

use serde_json::{Value, json};

use super::*;

impl State {
    /// Validates an app as Marathon's `AppDefinition` validator would (the parts the installer can get
    /// wrong); returns `details` entries.
    pub(super) fn validate_app(app: &Value, path: &str, group: Option<&str>) -> Vec<Value> {
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
    pub(super) fn stored(&mut self, mut app: Value, id: &str, version: &str) -> Value {
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
    pub(super) fn config_of(app: &Value) -> Value {
        let mut a = app.clone();
        if let Some(o) = a.as_object_mut() {
            o.remove("version");
            o.remove("versionInfo");
        }
        a
    }

    pub(super) fn with_counts(app: &Value) -> Value {
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
}
