//! This backend's registration: the `azure://` scheme, opening a parsed [`AzureUrl`], and the URL built from
//! the 2016 demo's `AZURE_*` variables.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::AzureQueue;
use super::config::{AzureUrl, ConnectionString, DEV_ACCOUNT};
use crate::keda::{Counts, KedaScaler};
use crate::{Backend, OpenMode, Queue, QueueError, Target};

/// The registry's entry for this backend (see [`crate::registry`]).
pub static BACKEND: AzureBackend = AzureBackend;

/// Azure Storage Queues' [`Backend`].
pub struct AzureBackend;

impl Backend for AzureBackend {
    /// The Azure SDK's `info` level logs every failed request with its URL (which can hold what the user put
    /// in the endpoint, secrets included) as `<== Failed response`.
    fn quiet_log_targets(&self) -> &'static [&'static str] {
        &[
            "typespec_client_core",
            "azure_core",
            "azure_identity",
            "azure_storage_queue",
        ]
    }

    fn scheme(&self) -> &'static str {
        "azure"
    }

    fn form(&self) -> &'static str {
        "azure://ACCOUNT/QUEUE[?endpoint=URL&…]"
    }

    fn summary(&self) -> &'static str {
        "an Azure Storage Queue or Azurite; the key, SAS or connection string comes from AZURE_STORAGE_*"
    }

    /// KEDA's Azure Storage Queue scaler (kedacore/keda `pkg/scalers/azure_queue_scaler.go`): the queue's
    /// approximate message count, which includes invisible (leased) messages, unless
    /// `queueLengthStrategy: visibleonly` (visible ones, peeked up to 32, then approximate). Target
    /// `queueLength`, default 5; activation `activationQueueLength`.
    fn keda(&self) -> Option<&'static KedaScaler> {
        static K: KedaScaler = KedaScaler {
            trigger: "azure-queue",
            target_key: "queueLength",
            default_target: 5,
            counts: Counts::All,
            alternative: Some((Counts::Visible, "queueLengthStrategy: visibleonly")),
        };
        Some(&K)
    }

    fn parse(&self, rest: &str) -> Result<Box<dyn Target>, String> {
        Ok(Box::new(AzureUrl::parse(rest)?))
    }

    fn url_from_legacy_env(&self, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        url_from_legacy_env(get)
    }
}

#[async_trait]
impl Target for AzureUrl {
    /// Creates the queue when missing in both modes (so that the roles and a watcher start in any order).
    async fn open(&self, _mode: OpenMode) -> Result<Arc<dyn Queue>, QueueError> {
        Ok(Arc::new(AzureQueue::open(self.clone()).await?))
    }

    /// A sibling queue in the same account: `work` → `work-telemetry`. Each queue has its own message count,
    /// so the work queue's depth never counts it.
    fn sibling(&self, suffix: &str) -> Result<(Box<dyn Target>, String), String> {
        let queue = format!("{}-{suffix}", self.queue);
        super::config::check_queue_name(&queue)?;
        let shown = format!("queue {queue}");
        Ok((
            Box::new(AzureUrl {
                queue,
                ..self.clone()
            }),
            shown,
        ))
    }

    /// Each message is sent with a time to live (see the backend's send).
    fn with_expiry(&self, after: Duration) -> Option<Box<dyn Target>> {
        Some(Box::new(AzureUrl {
            expiry: Some(after),
            ..self.clone()
        }))
    }
}

/// Builds an `azure://ACCOUNT/QUEUE` URL from the original demo's variables, when
/// `AZURE_STORAGE_ACCOUNT_NAME` or `AZURE_STORAGE_CONNECTION_STRING` is set: the account from the former, or
/// from the connection string (whose endpoint the backend then uses), and the queue from
/// `AZURE_STORAGE_QUEUE_NAME` (default `microscaling-demo`). The key stays in the environment
/// (`AZURE_STORAGE_ACCOUNT_KEY` or the connection string), where the backend reads it: the URL, which is
/// logged, never holds a secret. A malformed connection string still yields a URL, so that opening the queue
/// reports what is wrong with it.
pub fn url_from_legacy_env(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let var = |k: &str| crate::registry::legacy_var(get, k);
    let named = var("AZURE_STORAGE_ACCOUNT_NAME");
    let conn = var("AZURE_STORAGE_CONNECTION_STRING");
    if named.is_none() && conn.is_none() {
        return None;
    }
    let account = conn
        .as_deref()
        .and_then(|c| ConnectionString::parse(c).ok())
        .map(|c| c.account)
        .or(named)
        .unwrap_or_else(|| DEV_ACCOUNT.to_string());
    let queue = var("AZURE_STORAGE_QUEUE_NAME").unwrap_or_else(|| "microscaling-demo".into());
    Some(format!("azure://{account}/{queue}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_variables_make_an_azure_url_without_the_key() {
        let url = |vars: &[(&str, &str)]| {
            let map: std::collections::HashMap<_, _> = vars.iter().copied().collect();
            url_from_legacy_env(&|k| map.get(k).map(|v| v.to_string()))
        };
        assert_eq!(url(&[]), None);
        assert_eq!(
            url(&[
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct1"),
                ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
                ("AZURE_STORAGE_QUEUE_NAME", "jobs")
            ]),
            Some("azure://acct1/jobs".into())
        );
        assert_eq!(
            url(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "UseDevelopmentStorage=true"
            )]),
            Some("azure://devstoreaccount1/microscaling-demo".into())
        );
    }
}
