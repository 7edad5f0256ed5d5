//! The Marathon app and group definitions the installer sends, built from a validated plan. Fields stay
//! within Marathon 1.7's published JSON Schema (`AppDefinition.json`), which a test checks.
//!
//! Values that are secrets are kept as [`EnvValue::Sensitive`] so that the same definition renders either
//! for sending ([`Reveal::Yes`]) or for a person (`--dry-run`, diffs: `<redacted>`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::secret::{REDACTED, Secret};

/// Whether secrets appear in the rendered JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reveal {
    /// For the request itself.
    Yes,
    /// For anything a person reads.
    No,
}

/// An environment variable's value.
#[derive(Clone, Debug)]
pub enum EnvValue {
    Plain(String),
    /// A secret sent as plain env (the user chose it; a warning was printed).
    Sensitive(Secret),
    /// A reference to one of the app's `secrets` (`{"secret": NAME}`): Marathon resolves it from the
    /// cluster's secret store, so the value never appears in the definition.
    SecretRef(String),
}

/// One app of the demo.
#[derive(Clone, Debug)]
pub struct AppDef {
    /// Absolute id, e.g. `/microscaling-demo/consumer`.
    pub id: String,
    pub image: String,
    /// The container's arguments (our image has no shell, so never `cmd`); empty uses the image's own
    /// entrypoint.
    pub args: Vec<String>,
    pub env: BTreeMap<String, EnvValue>,
    /// Secret declarations: name → source in the secret store.
    pub secrets: BTreeMap<String, String>,
    pub instances: u32,
    pub cpus: f64,
    pub mem: f64,
    pub labels: BTreeMap<String, String>,
    /// Seconds between SIGTERM and SIGKILL.
    pub kill_grace_seconds: Option<u64>,
    /// Fixed host ports (name, port), with `requirePorts`.
    pub fixed_ports: Vec<(String, u16)>,
    /// Apps that must be deployed first.
    pub dependencies: Vec<String>,
}

impl AppDef {
    /// The app as Marathon's JSON.
    pub fn to_json(&self, reveal: Reveal) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        if !self.args.is_empty() {
            o.insert("args".into(), json!(self.args));
        }
        o.insert(
            "container".into(),
            json!({"type": "DOCKER", "docker": {"image": self.image, "forcePullImage": false}}),
        );
        o.insert("instances".into(), json!(self.instances));
        o.insert("cpus".into(), json!(self.cpus));
        o.insert("mem".into(), json!(self.mem));
        let env: Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| {
                let v = match (v, reveal) {
                    (EnvValue::Plain(s), _) => json!(s),
                    (EnvValue::Sensitive(s), Reveal::Yes) => json!(s.expose()),
                    (EnvValue::Sensitive(_), Reveal::No) => json!(REDACTED),
                    (EnvValue::SecretRef(name), _) => json!({ "secret": name }),
                };
                (k.clone(), v)
            })
            .collect();
        o.insert("env".into(), Value::Object(env));
        if !self.secrets.is_empty() {
            let s: Map<String, Value> = self
                .secrets
                .iter()
                .map(|(k, src)| (k.clone(), json!({ "source": src })))
                .collect();
            o.insert("secrets".into(), Value::Object(s));
        }
        o.insert("labels".into(), json!(self.labels));
        if let Some(g) = self.kill_grace_seconds {
            o.insert("taskKillGracePeriodSeconds".into(), json!(g));
        }
        if !self.fixed_ports.is_empty() {
            let defs: Vec<Value> = self
                .fixed_ports
                .iter()
                .map(|(name, port)| json!({"name": name, "port": port, "protocol": "tcp"}))
                .collect();
            o.insert("portDefinitions".into(), Value::Array(defs));
            o.insert("requirePorts".into(), json!(true));
        }
        if !self.dependencies.is_empty() {
            o.insert("dependencies".into(), json!(self.dependencies));
        }
        Value::Object(o)
    }

    /// The last segment of the id (`consumer`).
    pub fn name(&self) -> &str {
        self.id.rsplit('/').next().unwrap_or(&self.id)
    }
}

/// The group: every app of the install, sent in one `PUT /v2/groups/{id}` so the change is atomic.
#[derive(Clone, Debug)]
pub struct GroupDef {
    pub id: String,
    pub apps: Vec<AppDef>,
}

impl GroupDef {
    /// The body of `PUT /v2/groups/{id}`.
    pub fn to_json(&self, reveal: Reveal) -> Value {
        json!({
            "id": self.id,
            "apps": self.apps.iter().map(|a| a.to_json(reveal)).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppDef {
        let mut env = BTreeMap::new();
        env.insert("A".into(), EnvValue::Plain("1".into()));
        env.insert("KEY".into(), EnvValue::Sensitive(Secret::new("s3cret")));
        env.insert("REF".into(), EnvValue::SecretRef("key".into()));
        AppDef {
            id: "/g/consumer".into(),
            image: "img:1".into(),
            args: vec!["consumer".into()],
            env,
            secrets: [("key".to_string(), "demo/key".to_string())].into(),
            instances: 2,
            cpus: 0.1,
            mem: 32.0,
            labels: BTreeMap::new(),
            kill_grace_seconds: Some(15),
            fixed_ports: vec![],
            dependencies: vec![],
        }
    }

    #[test]
    fn secrets_show_only_when_sent() {
        let a = app();
        assert_eq!(a.to_json(Reveal::Yes)["env"]["KEY"], "s3cret");
        let shown = a.to_json(Reveal::No).to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains(REDACTED));
        assert_eq!(
            a.to_json(Reveal::No)["env"]["REF"],
            json!({"secret": "key"})
        );
        assert_eq!(
            a.to_json(Reveal::Yes)["secrets"]["key"]["source"],
            "demo/key"
        );
        assert!(a.to_json(Reveal::Yes).get("cmd").is_none());
        assert_eq!(a.name(), "consumer");
    }
}
