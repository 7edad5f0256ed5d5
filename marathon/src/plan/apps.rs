//! The apps of an install besides the queue's own: remainder, producer, consumer, and the optional
//! Microscaling engine with its configuration.

use std::collections::BTreeMap;

use serde_json::json;

use super::{InstallArgs, Names, QueueKind, QueueSetup, check_image};
use crate::definitions::{AppDef, EnvValue};
use crate::errors::UsageError;

impl InstallArgs {
    /// Remainder, producer and consumer, in the original demo's order.
    pub(super) fn role_apps(
        &self,
        names: &Names,
        q: &QueueSetup,
        deps: Vec<String>,
    ) -> Vec<AppDef> {
        let mut apps = Vec::new();
        apps.push(AppDef {
            id: names.id("remainder"),
            image: self.image.clone(),
            args: vec!["remainder".into()],
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            instances: self.remainder_instances,
            cpus: self.remainder_cpus,
            mem: self.remainder_mem,
            labels: names.labels_for("remainder"),
            kill_grace_seconds: None,
            fixed_ports: vec![],
            dependencies: vec![],
        });
        // Both roles publish to the telemetry channel, or both do not (a run half on it cannot be audited).
        let mut role_env = q.env.clone();
        let telemetry = if self.telemetry { "on" } else { "off" };
        role_env.insert("MW_TELEMETRY".into(), EnvValue::Plain(telemetry.into()));
        let mut producer_env = role_env.clone();
        producer_env.insert(
            "PRODUCER_RATE".into(),
            EnvValue::Plain(self.producer_rate.to_string()),
        );
        apps.push(AppDef {
            id: names.id("producer"),
            image: self.image.clone(),
            args: vec!["producer".into()],
            env: producer_env,
            secrets: q.secrets.clone(),
            instances: self.producer_instances,
            cpus: self.producer_cpus,
            mem: self.producer_mem,
            labels: names.labels_for("producer"),
            kill_grace_seconds: None,
            fixed_ports: vec![],
            dependencies: deps.clone(),
        });
        let mut consumer_env = role_env;
        consumer_env.insert(
            "CONSUMER_WORK".into(),
            EnvValue::Plain(self.consumer_work.to_string()),
        );
        let drain = humantime::format_duration(self.consumer_drain_timeout).to_string();
        consumer_env.insert("CONSUMER_DRAIN_TIMEOUT".into(), EnvValue::Plain(drain));
        let drain_secs = self.consumer_drain_timeout.as_secs()
            + u64::from(self.consumer_drain_timeout.subsec_nanos() > 0);
        apps.push(AppDef {
            id: names.id("consumer"),
            image: self.image.clone(),
            args: vec!["consumer".into()],
            env: consumer_env,
            secrets: q.secrets.clone(),
            instances: self.consumer_instances,
            cpus: self.consumer_cpus,
            mem: self.consumer_mem,
            labels: names.labels_for("consumer"),
            kill_grace_seconds: Some(drain_secs + 7),
            fixed_ports: vec![],
            dependencies: deps,
        });

        apps
    }

    /// The Microscaling engine's app, and whether its Marathon API is to be the leader found at install.
    pub(super) fn engine_app(
        &self,
        names: &Names,
        q: &QueueSetup,
    ) -> Result<(AppDef, Option<String>), UsageError> {
        let mut needs_leader = None;
        check_image(&self.engine_image, "--engine-image")?;
        if self.engine_max_containers == 0 || self.target_queue_length == 0 {
            return Err(UsageError::new(
                "--engine-max-containers and --target-queue-length must be more than 0",
            ));
        }
        let metric = match self.queue {
            QueueKind::Nsq => "NSQ",
            QueueKind::Azure => "AzureQueue",
        };
        let cfg = |app: &str, priority: u32, min: u32, rule: &str| {
            json!({
                // The engine addresses apps by their id without the leading '/'.
                "name": names.id(app).trim_start_matches('/'),
                "priority": priority,
                "minContainers": min,
                "maxContainers": self.engine_max_containers,
                "ruleType": rule,
                "metricType": metric,
                "config": {
                    "image": self.image,
                    "targetQueueLength": self.target_queue_length,
                    "queueName": self.azure_queue,
                    "topicName": self.topic,
                    "channelName": self.channel,
                },
            })
        };
        let config = json!({
            "maxContainers": self.engine_max_containers,
            "apps": [cfg("consumer", 1, 1, "Queue"), cfg("remainder", 2, 0, "Remainder")],
        });
        let mut env = BTreeMap::new();
        env.insert("MSS_SCHEDULER".into(), EnvValue::Plain("MARATHON".into()));
        env.insert("MSS_CONFIG".into(), EnvValue::Plain("ENVVAR".into()));
        env.insert(
            "MSS_CONFIG_DATA".into(),
            EnvValue::Plain(config.to_string()),
        );
        // The engine's default monitor dereferences a websocket that standalone mode never opens.
        env.insert("MSS_MONITOR".into(), EnvValue::Plain("none".into()));
        let api = match &self.engine_marathon_api {
            Some(u) => crate::config::validate_url(u).map_err(|e| {
                UsageError::new(
                    e.to_string()
                        .replace("--marathon-url", "--engine-marathon-api"),
                )
            })?,
            None => {
                needs_leader = Some(names.id("engine"));
                "http://<leader from /v2/leader>".to_string()
            }
        };
        env.insert("MSS_MARATHON_API".into(), EnvValue::Plain(api));
        match self.queue {
            QueueKind::Nsq => {
                let s = q.stats_endpoint.clone().unwrap_or_default();
                env.insert("NSQ_STATS_ENDPOINT".into(), EnvValue::Plain(s));
            }
            QueueKind::Azure => {
                for k in ["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"] {
                    if let Some(v) = q.env.get(k) {
                        env.insert(k.into(), v.clone());
                    }
                }
            }
        }
        let app = AppDef {
            id: names.id("engine"),
            image: self.engine_image.clone(),
            args: vec![],
            env,
            secrets: q.secrets.clone(),
            instances: 1,
            cpus: 0.1,
            mem: 64.0,
            labels: names.labels_for("engine"),
            kill_grace_seconds: None,
            fixed_ports: vec![],
            dependencies: vec![names.id("consumer"), names.id("remainder")],
        };
        Ok((app, needs_leader))
    }
}
