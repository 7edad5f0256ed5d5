//! The queue part of an install: NSQ (an external nsqd, or an nsqd app in the group) or an Azure Storage
//! queue, as the env every app gets and the secrets it references.

use std::collections::BTreeMap;

use super::{InstallArgs, Names, QueueSetup, check_image};
use crate::definitions::{AppDef, EnvValue};
use crate::errors::UsageError;

/// The nsqd image for our own binaries.
const NSQD_IMAGE: &str = "nsqio/nsq:v1.3.0";
/// The nsqd the engine can read: its NSQ metric parses only 0.3.x's wrapped `/stats`
/// (`{"status_code":200,"data":{"topics":…}}`), which nsqd 1.x no longer sends.
pub(super) const NSQD_IMAGE_FOR_ENGINE: &str = "nsqio/nsq:v0.3.8";
/// nsqd's TCP and HTTP ports, fixed on the agent so the other apps can find them.
const NSQD_TCP: u16 = 4150;
const NSQD_HTTP: u16 = 4151;

fn check_host_port(value: &str, flag: &str) -> Result<(String, u16), UsageError> {
    let bad = || {
        UsageError::new(format!(
            "{flag} {value:?}: expected HOST:PORT, e.g. nsqd.example.com:4150"
        ))
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    // `@` or `/` mean a URL or credentials were pasted, which would be copied into every app's environment.
    if host.is_empty()
        || port == 0
        || host.contains(char::is_whitespace)
        || host.contains(['@', '/'])
    {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Azure's queue naming rule: 3–63 lowercase letters, digits and single hyphens, starting and ending with a
/// letter or digit.
fn check_azure_queue(name: &str) -> Result<(), UsageError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "--azure-queue {name:?}: Azure queue names are 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
        )))
    }
}

/// The Mesos-DNS name of an app: `/a/b/nsqd` → `nsqd-b-a.marathon.mesos`.
fn mesos_dns_name(app_id: &str) -> String {
    let mut parts: Vec<&str> = app_id.trim_matches('/').split('/').collect();
    parts.reverse();
    format!("{}.marathon.mesos", parts.join("-"))
}

impl InstallArgs {
    /// NSQ: an external nsqd, or one installed in the group.
    pub(super) fn nsq_setup(
        &self,
        names: &Names,
        warnings: &mut Vec<String>,
    ) -> Result<QueueSetup, UsageError> {
        let mut q = QueueSetup::default();
        if self.azure_key.is_some() || self.azure_key_secret.is_some() {
            warnings.push("the Azure key is ignored with --queue nsq".to_string());
        }
        if self.topic.is_empty() || self.channel.is_empty() {
            return Err(UsageError::new("--topic and --channel must not be empty"));
        }
        let (tcp, http) = match &self.nsqd {
            Some(addr) => {
                if self.engine {
                    return Err(UsageError::new(
                        "--engine with an external --nsqd: the Microscaling engine reads only nsqd 0.3.x's /stats format (nsqd 1.x changed it), and the installer cannot check the external nsqd's version. Leave out --nsqd to have nsqio/nsq:v0.3.8 installed in the group, or use --queue azure",
                    ));
                }
                let (host, _) = check_host_port(addr, "--nsqd")?;
                let http = match &self.nsqd_http {
                    Some(h) => {
                        check_host_port(h, "--nsqd-http")?;
                        h.clone()
                    }
                    None => format!("{host}:{NSQD_HTTP}"),
                };
                (addr.clone(), http)
            }
            None => {
                let nsqd_id = names.id("nsqd");
                let host = self
                    .nsqd_host
                    .clone()
                    .unwrap_or_else(|| mesos_dns_name(&nsqd_id));
                if host.is_empty() || host.contains(char::is_whitespace) || host.contains(':') {
                    return Err(UsageError::new(format!(
                        "--nsqd-host {host:?}: expected a host name"
                    )));
                }
                let image = match (&self.nsqd_image, self.engine) {
                    (Some(i), true) if !i.contains(":v0.3.") => {
                        return Err(UsageError::new(format!(
                            "--nsqd-image {i:?} with --engine: the Microscaling engine reads only nsqd 0.3.x's /stats format (nsqd 1.x changed it); use an nsqio/nsq:v0.3.x image, or leave out --nsqd-image for {NSQD_IMAGE_FOR_ENGINE}"
                        )));
                    }
                    (Some(i), _) => i.clone(),
                    (None, true) => NSQD_IMAGE_FOR_ENGINE.to_string(),
                    (None, false) => NSQD_IMAGE.to_string(),
                };
                check_image(&image, "--nsqd-image")?;
                q.nsqd = Some(AppDef {
                    id: nsqd_id,
                    image,
                    args: vec![
                        "/nsqd".into(),
                        format!("--tcp-address=0.0.0.0:{NSQD_TCP}"),
                        format!("--http-address=0.0.0.0:{NSQD_HTTP}"),
                        "--data-path=/tmp".into(),
                    ],
                    env: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                    instances: 1,
                    cpus: 0.2,
                    mem: 128.0,
                    labels: names.labels_for("nsqd"),
                    kill_grace_seconds: None,
                    fixed_ports: vec![("tcp".into(), NSQD_TCP), ("http".into(), NSQD_HTTP)],
                    dependencies: vec![],
                });
                (format!("{host}:{NSQD_TCP}"), format!("{host}:{NSQD_HTTP}"))
            }
        };
        q.env
            .insert("MSS_QUEUE_ENDPOINT".into(), EnvValue::Plain(tcp));
        q.env
            .insert("MSS_TOPIC_NAME".into(), EnvValue::Plain(self.topic.clone()));
        q.env.insert(
            "MSS_CHANNEL_NAME".into(),
            EnvValue::Plain(self.channel.clone()),
        );
        q.env
            .insert("NSQ_STATS_ENDPOINT".into(), EnvValue::Plain(http.clone()));
        // The engine reads queue depth from nsqd's HTTP side too (see `engine_app`).
        q.stats_endpoint = Some(http);
        Ok(q)
    }

    /// An Azure Storage queue: the account, the queue and the key (plain, or a secret reference).
    pub(super) fn azure_setup(&self, warnings: &mut Vec<String>) -> Result<QueueSetup, UsageError> {
        let mut q = QueueSetup::default();
        let account = self.azure_account.clone().filter(|a| !a.is_empty()).ok_or_else(|| {
            UsageError::new(
                "--queue azure needs the storage account: pass --azure-account NAME or set AZURE_STORAGE_ACCOUNT_NAME",
            )
        })?;
        if !(3..=24).contains(&account.len())
            || !account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(UsageError::new(format!(
                "--azure-account {account:?}: Azure storage account names are 3-24 lowercase letters and digits"
            )));
        }
        check_azure_queue(&self.azure_queue)?;
        let key = match (&self.azure_key, &self.azure_key_secret) {
            (Some(_), Some(source)) if !source.is_empty() => {
                warnings.push(
                    "both a plain Azure key and --azure-key-secret were given: only the secret reference is used".to_string(),
                );
                q.secrets.insert("azure-storage-key".into(), source.clone());
                EnvValue::SecretRef("azure-storage-key".into())
            }
            (None, Some(source)) if !source.is_empty() => {
                q.secrets.insert("azure-storage-key".into(), source.clone());
                EnvValue::SecretRef("azure-storage-key".into())
            }
            (Some(k), _) if !k.is_empty() => {
                warnings.push(
                    "the Azure key goes into the app definitions as plain env: anyone who can read these apps in Marathon can read it. Use --azure-key-secret SOURCE with a secret store (DC/OS Enterprise) to keep it out".to_string(),
                );
                EnvValue::Sensitive(k.clone())
            }
            _ => {
                return Err(UsageError::new(
                    "--queue azure needs the storage account key: set AZURE_STORAGE_ACCOUNT_KEY (or --azure-key), or pass --azure-key-secret SOURCE to reference it in the cluster's secret store",
                ));
            }
        };
        q.env.insert(
            "AZURE_STORAGE_ACCOUNT_NAME".into(),
            EnvValue::Plain(account),
        );
        q.env.insert("AZURE_STORAGE_ACCOUNT_KEY".into(), key);
        q.env.insert(
            "AZURE_STORAGE_QUEUE_NAME".into(),
            EnvValue::Plain(self.azure_queue.clone()),
        );
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_dns_names_reverse_the_path() {
        assert_eq!(mesos_dns_name("/a/b/nsqd"), "nsqd-b-a.marathon.mesos");
    }
}
