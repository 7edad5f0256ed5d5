//! `marathon-install`'s flags and what they turn into: the validated plan and the group definition, with
//! the queue settings, the optional nsqd and scaling engine, and the labels.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use workload::cli::{parse_duration, whole};

use super::config::{ConnectionArgs, validate_group};
use super::definitions::{AppDef, EnvValue, GroupDef};
use super::errors::UsageError;
use super::labels::{self, ROLE_KEY, SUITE_KEY, SUITE_VALUE, VERSION_KEY};
use super::secret::Secret;

mod apps;
mod queue;

/// The installer's version, written into every app's labels and the default image tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The queue the demo runs on.
///
/// Only these two, by name, and not the `queues` registry: they are deployment facts, not dispatch. An NSQ
/// install runs an nsqd app in the group (or points at one) and an Azure one needs the storage account's
/// env, and the Microscaling engine the installer can add reads only its `NSQ` and `AzureQueue` metrics.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// NSQ: an nsqd app in the group, or an external one with --nsqd.
    Nsq,
    /// An Azure Storage queue (--azure-account, and the key as a secret reference or plain env).
    Azure,
}

/// Install the queue demo on Marathon: producer, consumers and remainder (and an nsqd, and optionally the
/// Microscaling engine) as one Marathon group.
///
/// Everything goes into one group (--group, default /microscaling-demo) with a single PUT, so an install
/// or an update is atomic, and running it again with the same options changes nothing ("up to date"); with
/// other options it reports what changes. It then waits until Marathon's deployment is finished (or
/// --timeout), unless --no-wait. All options are checked before Marathon is contacted.
///
/// Exit status: 0 installed (or up to date), 1 Marathon or network failure, 2 bad usage.
#[derive(Parser, Debug)]
#[command(name = "marathon-install", version)]
pub struct InstallArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// The Marathon group that holds the demo's apps.
    #[arg(long, default_value = "/microscaling-demo", value_name = "ID")]
    pub group: String,

    /// The image holding the producer, consumer and remainder binaries [default: queue-workload:VERSION, the tag
    /// `make image` builds; push it to a registry the agents can pull from and name it here].
    #[arg(long, default_value_t = format!("queue-workload:{VERSION}"), value_name = "IMAGE")]
    pub image: String,

    /// The queue to run on.
    #[arg(long, value_enum, default_value_t = QueueKind::Nsq)]
    pub queue: QueueKind,

    /// An external nsqd's TCP address (HOST:PORT); without it an nsqd app is installed in the group.
    #[arg(long, value_name = "HOST:PORT")]
    pub nsqd: Option<String>,

    /// The external nsqd's HTTP address for queue depth (default: --nsqd's host, port 4151).
    #[arg(long, value_name = "HOST:PORT", requires = "nsqd")]
    pub nsqd_http: Option<String>,

    /// The host name the apps use to reach the installed nsqd (it listens on host ports 4150 and 4151).
    ///
    /// Default: its Mesos-DNS name, e.g. nsqd-microscaling-demo.marathon.mesos for the group
    /// /microscaling-demo.
    #[arg(long, value_name = "HOST", conflicts_with = "nsqd")]
    pub nsqd_host: Option<String>,

    /// The image of the installed nsqd (default nsqio/nsq:v1.3.0; with --engine, nsqio/nsq:v0.3.8).
    #[arg(long, value_name = "IMAGE", conflicts_with = "nsqd")]
    pub nsqd_image: Option<String>,

    /// NSQ topic (MSS_TOPIC_NAME).
    #[arg(long, default_value = "microscaling-demo", value_name = "NAME")]
    pub topic: String,

    /// NSQ channel the consumers share (MSS_CHANNEL_NAME).
    #[arg(long, default_value = "consumers", value_name = "NAME")]
    pub channel: String,

    /// Azure Storage account name.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT_NAME", value_name = "NAME")]
    pub azure_account: Option<String>,

    /// Azure Storage account key, put into the apps as plain env (a warning says why that is risky);
    /// prefer --azure-key-secret.
    #[arg(
        long,
        env = "AZURE_STORAGE_ACCOUNT_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub azure_key: Option<Secret>,

    /// The Azure key as a Marathon secret reference: SOURCE is its path in the cluster's secret store
    /// (DC/OS Enterprise), e.g. microscaling/azure-key. Takes precedence over --azure-key and
    /// AZURE_STORAGE_ACCOUNT_KEY.
    #[arg(long, value_name = "SOURCE")]
    pub azure_key_secret: Option<String>,

    /// Azure Storage queue name.
    #[arg(
        long,
        env = "AZURE_STORAGE_QUEUE_NAME",
        default_value = "microscaling-demo",
        value_name = "NAME"
    )]
    pub azure_queue: String,

    /// Producer instances.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = whole::<u32>(0, u32::MAX.into()), allow_negative_numbers = true)]
    pub producer_instances: u32,
    /// Consumer instances (the engine changes it when --engine).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = whole::<u32>(0, u32::MAX.into()), allow_negative_numbers = true)]
    pub consumer_instances: u32,
    /// Remainder instances (the engine changes it when --engine).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = whole::<u32>(0, u32::MAX.into()), allow_negative_numbers = true)]
    pub remainder_instances: u32,
    /// CPUs per producer.
    #[arg(
        long,
        default_value_t = 0.1,
        value_name = "CPUS",
        value_parser = workload::cli::parse_amount,
        allow_negative_numbers = true
    )]
    pub producer_cpus: f64,
    /// CPUs per consumer.
    #[arg(
        long,
        default_value_t = 0.1,
        value_name = "CPUS",
        value_parser = workload::cli::parse_amount,
        allow_negative_numbers = true
    )]
    pub consumer_cpus: f64,
    /// CPUs per remainder.
    #[arg(
        long,
        default_value_t = 0.5,
        value_name = "CPUS",
        value_parser = workload::cli::parse_amount,
        allow_negative_numbers = true
    )]
    pub remainder_cpus: f64,
    /// Memory per producer, in MiB.
    #[arg(
        long,
        default_value_t = 32.0,
        value_name = "MIB",
        value_parser = workload::cli::parse_amount,
        allow_negative_numbers = true
    )]
    pub producer_mem: f64,
    /// Memory per consumer, in MiB.
    #[arg(
        long,
        default_value_t = 32.0,
        value_name = "MIB",
        value_parser = workload::cli::parse_amount,
        allow_negative_numbers = true
    )]
    pub consumer_mem: f64,
    /// Memory per remainder, in MiB.
    #[arg(
        long,
        default_value_t = 32.0,
        value_name = "MIB",
        value_parser = workload::cli::parse_amount,
        allow_negative_numbers = true
    )]
    pub remainder_mem: f64,

    /// Messages per second each producer sends (PRODUCER_RATE).
    #[arg(
        long,
        default_value_t = 10.0,
        value_name = "MSGS_PER_S",
        value_parser = workload::cli::parse_rate,
        allow_negative_numbers = true
    )]
    pub producer_rate: f64,

    /// Work per message in each consumer (CONSUMER_WORK): any spec the consumer's --work takes: none,
    /// sleep:DURATION, cpu:DURATION, or a distribution such as sleep:exp(20ms).
    #[arg(long, default_value = "sleep:100ms", value_name = "SPEC")]
    pub consumer_work: workload::work::WorkSpec,

    /// How long a consumer drains on SIGTERM (CONSUMER_DRAIN_TIMEOUT); Marathon's kill grace period is set
    /// 7 s longer so the drain ends before SIGKILL.
    #[arg(long, default_value = "8s", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub consumer_drain_timeout: Duration,

    /// Whether the producers and consumers publish their records to the telemetry channel (MW_TELEMETRY).
    ///
    /// On by default: a task's files leave with it when the engine scales in, so the loss audit (`audit
    /// --queue`) and the consumer count from heartbeats (`scorecard watch --consumers telemetry`) read the
    /// sibling queues QUEUE-telemetry and QUEUE-heartbeat beside the work queue instead (NSQ: the topics
    /// TOPIC-telemetry and TOPIC-heartbeat). The engine reads the work queue only. `off` leaves them unused.
    #[arg(long, default_value = "on", value_parser = workload::cli::parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub telemetry: bool,

    /// Also install the Microscaling engine, which scales consumers and remainder to hold the queue length.
    #[arg(long)]
    pub engine: bool,

    /// The engine's image (0.9.x).
    #[arg(
        long,
        default_value = "microscaling/microscaling:latest",
        value_name = "IMAGE",
        requires = "engine"
    )]
    pub engine_image: String,

    /// The queue length the engine aims for.
    #[arg(long, default_value_t = 50, value_name = "N", requires = "engine", value_parser = whole::<u32>(1, u32::MAX.into()), allow_negative_numbers = true)]
    pub target_queue_length: u32,

    /// The most containers the engine runs (consumers plus remainders).
    #[arg(long, default_value_t = 10, value_name = "N", requires = "engine", value_parser = whole::<u32>(1, u32::MAX.into()), allow_negative_numbers = true)]
    pub engine_max_containers: u32,

    /// The Marathon URL the engine uses (MSS_MARATHON_API); default http://LEADER, LEADER from /v2/leader.
    #[arg(long, value_name = "URL", requires = "engine")]
    pub engine_marathon_api: Option<String>,

    /// Extra label for every app, KEY=VALUE (repeatable); keys follow Docker's guidelines (reverse-DNS
    /// namespace, lowercase): a reserved com.docker./io.docker./org.dockerproject. prefix is refused, other
    /// departures warn.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Print the JSON that would be sent (secrets shown as <redacted>) and contact nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Return once Marathon accepted the change, without waiting for the deployment.
    #[arg(long)]
    pub no_wait: bool,

    /// Cancel a deployment that locks the group instead of waiting for it (Marathon's force=true).
    #[arg(long)]
    pub force: bool,

    /// The longest to wait for locks and for the deployment to finish.
    #[arg(long, default_value = "5m", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub timeout: Duration,

    /// How often to poll /v2/deployments.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION", hide = true)]
    pub poll_interval: Duration,
}

/// A validated install: the group to send and how to send it.
#[derive(Debug)]
pub struct InstallPlan {
    pub group: GroupDef,
    /// Apps whose instance count the engine owns (kept as they are on re-install).
    pub engine_scaled: Vec<String>,
    /// The engine app's id, when installed, and whether its MSS_MARATHON_API waits for `/v2/leader`.
    pub engine_needs_leader: Option<String>,
    /// Warnings to print before anything else (plain secrets, label guidelines).
    pub warnings: Vec<String>,
}

fn check_image(value: &str, flag: &str) -> Result<(), UsageError> {
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(UsageError::new(format!(
            "{flag} {value:?}: expected an image reference such as registry/name:tag"
        )));
    }
    Ok(())
}

fn check_resources(role: &str, cpus: f64, mem: f64) -> Result<(), UsageError> {
    if !(cpus.is_finite() && cpus > 0.0) {
        return Err(UsageError::new(format!(
            "--{role}-cpus must be more than 0 (got {cpus})"
        )));
    }
    if !(mem.is_finite() && mem >= 8.0) {
        return Err(UsageError::new(format!(
            "--{role}-mem must be at least 8 MiB (got {mem})"
        )));
    }
    Ok(())
}

/// How the apps of the group are named and labelled.
struct Names {
    group: String,
    labels: BTreeMap<String, String>,
}

impl Names {
    fn id(&self, name: &str) -> String {
        format!("{}/{name}", self.group)
    }

    fn labels_for(&self, role: &str) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(ROLE_KEY.to_string(), role.to_string());
        l
    }
}

/// The queue settings every app gets (as the original variables, which the backends read), the secrets they
/// reference, and the nsqd app when the group runs its own.
#[derive(Default)]
struct QueueSetup {
    env: BTreeMap<String, EnvValue>,
    secrets: BTreeMap<String, String>,
    nsqd: Option<AppDef>,
    stats_endpoint: Option<String>,
}

impl InstallArgs {
    /// Checks every option and builds the plan. Nothing is contacted.
    pub fn plan(&self) -> Result<InstallPlan, UsageError> {
        let mut warnings = Vec::new();
        let group = validate_group(&self.group)?;
        self.check_flags()?;
        let names = Names {
            group: group.clone(),
            labels: self.common_labels(&mut warnings)?,
        };
        let q = match self.queue {
            QueueKind::Nsq => self.nsq_setup(&names, &mut warnings)?,
            QueueKind::Azure => self.azure_setup(&mut warnings)?,
        };
        let mut apps = Vec::new();
        let deps: Vec<String> = q.nsqd.iter().map(|a| a.id.clone()).collect();
        apps.extend(q.nsqd.clone());
        apps.extend(self.role_apps(&names, &q, deps));
        let (mut engine_scaled, mut engine_needs_leader) = (Vec::new(), None);
        if self.engine {
            let (app, needs_leader) = self.engine_app(&names, &q)?;
            apps.push(app);
            engine_scaled = vec![names.id("consumer"), names.id("remainder")];
            engine_needs_leader = needs_leader;
        }
        Ok(InstallPlan {
            group: GroupDef { id: group, apps },
            engine_scaled,
            engine_needs_leader,
            warnings,
        })
    }

    /// The checks that need no other flag's value.
    fn check_flags(&self) -> Result<(), UsageError> {
        check_image(&self.image, "--image")?;
        check_resources("producer", self.producer_cpus, self.producer_mem)?;
        check_resources("consumer", self.consumer_cpus, self.consumer_mem)?;
        check_resources("remainder", self.remainder_cpus, self.remainder_mem)?;
        if !(self.producer_rate.is_finite() && self.producer_rate >= 0.0) {
            return Err(UsageError::new(
                "--producer-rate must be 0 (as fast as possible) or more",
            ));
        }
        if self.timeout.is_zero() || self.poll_interval.is_zero() {
            return Err(UsageError::new("--timeout must be more than 0"));
        }
        Ok(())
    }

    /// The labels every app gets: `--label`s, then the suite's own.
    fn common_labels(
        &self,
        warnings: &mut Vec<String>,
    ) -> Result<BTreeMap<String, String>, UsageError> {
        let mut common_labels = BTreeMap::new();
        for arg in &self.labels {
            let l = labels::parse(arg).map_err(|e| UsageError::new(e.to_string()))?;
            if !l.warnings.is_empty() {
                warnings.push(format!(
                    "label key {:?} does not follow Docker's label guidelines: {}",
                    l.key,
                    l.warnings.join("; ")
                ));
            }
            common_labels.insert(l.key, l.value);
        }
        common_labels.insert(SUITE_KEY.to_string(), SUITE_VALUE.to_string());
        common_labels.insert(VERSION_KEY.to_string(), VERSION.to_string());
        Ok(common_labels)
    }
}

#[cfg(test)]
mod tests {
    use super::queue::NSQD_IMAGE_FOR_ENGINE;
    use super::*;

    fn args(extra: &[&str]) -> InstallArgs {
        let mut v = vec!["marathon-install"];
        v.extend_from_slice(extra);
        InstallArgs::try_parse_from(v).unwrap()
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        InstallArgs::command().debug_assert();
    }

    #[test]
    fn nsq_default_installs_nsqd_and_points_apps_at_it() {
        let p = args(&[]).plan().unwrap();
        let names: Vec<&str> = p.group.apps.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["nsqd", "remainder", "producer", "consumer"]);
        let c = p
            .group
            .apps
            .iter()
            .find(|a| a.name() == "consumer")
            .unwrap();
        assert!(
            matches!(&c.env["MSS_QUEUE_ENDPOINT"], EnvValue::Plain(s) if s == "nsqd-microscaling-demo.marathon.mesos:4150")
        );
        assert_eq!(c.kill_grace_seconds, Some(15));
        assert_eq!(c.args, ["consumer"]);
    }

    /// An Azure install whose key is a secret reference (no plain key, no warning).
    const AZURE: &[&str] = &[
        "--queue",
        "azure",
        "--azure-account",
        "demoacct",
        "--azure-key-secret",
        "s",
    ];

    fn env_of<'a>(p: &'a InstallPlan, app: &str, key: &str) -> Option<&'a str> {
        let a = p.group.apps.iter().find(|a| a.name() == app).unwrap();
        match a.env.get(key) {
            Some(EnvValue::Plain(s)) => Some(s),
            Some(other) => panic!("{app} {key}: {other:?}"),
            None => None,
        }
    }

    #[test]
    fn telemetry_is_on_for_producer_and_consumer_unless_turned_off() {
        for queue in [&["--queue", "nsq"][..], AZURE] {
            let p = args(queue).plan().unwrap();
            for role in ["producer", "consumer"] {
                assert_eq!(
                    env_of(&p, role, "MW_TELEMETRY"),
                    Some("on"),
                    "{queue:?} {role}"
                );
            }
            // The remainder has no queue; nsqd is not ours.
            for other in ["remainder", "nsqd"] {
                if p.group.apps.iter().any(|a| a.name() == other) {
                    assert_eq!(env_of(&p, other, "MW_TELEMETRY"), None, "{other}");
                }
            }
            let mut off = queue.to_vec();
            off.extend(["--telemetry", "off"]);
            let p = args(&off).plan().unwrap();
            for role in ["producer", "consumer"] {
                assert_eq!(
                    env_of(&p, role, "MW_TELEMETRY"),
                    Some("off"),
                    "{off:?} {role}"
                );
            }
        }
        assert!(InstallArgs::try_parse_from(["marathon-install", "--telemetry", "maybe"]).is_err());
    }

    #[test]
    fn the_engine_reads_the_work_queue_never_a_telemetry_sibling() {
        for queue in [&["--queue", "nsq"][..], AZURE] {
            let mut a = queue.to_vec();
            a.push("--engine");
            let p = args(&a).plan().unwrap();
            assert_eq!(env_of(&p, "consumer", "MW_TELEMETRY"), Some("on"));
            let cfg: serde_json::Value =
                serde_json::from_str(env_of(&p, "engine", "MSS_CONFIG_DATA").unwrap()).unwrap();
            let c = &cfg["apps"][0]["config"];
            // The names the consumers use (the 2016 variables), which the engine's metric must read.
            let (topic, channel, queue_name) = (
                env_of(&p, "consumer", "MSS_TOPIC_NAME"),
                env_of(&p, "consumer", "MSS_CHANNEL_NAME"),
                env_of(&p, "consumer", "AZURE_STORAGE_QUEUE_NAME"),
            );
            if let Some(t) = topic {
                assert_eq!(c["topicName"], t);
                assert_eq!(c["channelName"], channel.unwrap());
            }
            if let Some(q) = queue_name {
                assert_eq!(c["queueName"], q);
            }
            assert!(
                topic.is_some() || queue_name.is_some(),
                "{queue:?}: no queue named"
            );
            for key in ["topicName", "channelName", "queueName"] {
                let v = c[key].as_str().unwrap_or_default();
                assert!(
                    !v.ends_with("-telemetry") && !v.ends_with("-heartbeat"),
                    "the engine would scale on the suite's records: {key} {v}"
                );
            }
        }
    }

    #[test]
    fn engine_on_nsq_uses_the_old_nsqd_or_refuses() {
        let p = args(&["--engine"]).plan().unwrap();
        assert_eq!(p.group.apps[0].image, NSQD_IMAGE_FOR_ENGINE);
        let e = p.group.apps.iter().find(|a| a.name() == "engine").unwrap();
        assert!(matches!(&e.env["MSS_MONITOR"], EnvValue::Plain(s) if s == "none"));
        // The engine reads depth from the installed nsqd's HTTP port: an empty endpoint would blind it.
        assert!(
            matches!(&e.env["NSQ_STATS_ENDPOINT"], EnvValue::Plain(s) if s == "nsqd-microscaling-demo.marathon.mesos:4151"),
            "{:?}",
            e.env["NSQ_STATS_ENDPOINT"]
        );
        let EnvValue::Plain(cfg) = &e.env["MSS_CONFIG_DATA"] else {
            panic!()
        };
        let cfg: serde_json::Value = serde_json::from_str(cfg).unwrap();
        assert_eq!(cfg["apps"][0]["name"], "microscaling-demo/consumer");
        assert_eq!(cfg["apps"][0]["ruleType"], "Queue");
        let err = args(&["--engine", "--nsqd", "n:4150"])
            .plan()
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.3.x"), "{err}");
        let err = args(&["--engine", "--nsqd-image", "nsqio/nsq:v1.3.0"])
            .plan()
            .unwrap_err();
        assert!(err.to_string().contains("0.3.x"));
    }
}
