//! The Azure Storage Queue backend, on Microsoft's official `azure_storage_queue` crate.
//!
//! How the [`Queue`] contract maps onto the service:
//! - publish: one `PUT …/messages` per message (the service has no batch put), up to [`PUBLISH_FANOUT`] of a
//!   batch in flight at once; `Ok` once every one got its 201. A batch that fails part-way is retried whole
//!   by the producer, so its sent messages may arrive twice (duplicates, never loss).
//! - receive: up to 32 per call with the visibility timeout set to the lease; the service has no long poll,
//!   so an empty queue is polled again with a growing pause until `wait` runs out.
//! - ack: delete with the message's latest pop receipt; a 404 or 400 (pop receipt mismatch) means the lease
//!   passed to another consumer, except a 404 within our lease (an earlier delete of ours whose answer was
//!   lost). A delete without an answer is sent again; one still without an answer fails the whole ack.
//! - release: set the visibility timeout to the delay (0: visible at once).
//! - extend: set the visibility timeout to the lease; the service answers with a *new* pop receipt (in the
//!   `x-ms-popreceipt` header) and the old one is dead, so the [`Receipt`] is updated in place.
//! - depth: the approximate message count (includes leased messages), or visible-only with `depth=visible`.
//!
//! The SDK's own retries are off: the producer and consumer retry with back-off and count every failure, and
//! [`QueueError::is_throttled`] tells 503/500/timeouts apart for their stats.

mod backend;
mod config;
mod credential;
mod error;
mod sas;
mod settle;
mod shared_key;
mod transport;

use settle::{ack_outcome, visibility_seconds};
use transport::{entra_credential, transport};

use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::http::headers::HeaderName;
use azure_core::http::{ClientOptions, RetryOptions, StatusCode, Url};
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders, QueueClientPeekMessagesOptions,
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use futures_util::{StreamExt, TryStreamExt, stream};

pub use config::{
    AuthMode, AzureUrl, ConnectionString, DEFAULT_API_VERSION, DEV_ACCOUNT, DepthMode, Encoding,
    MAX_MESSAGE_BYTES, check_queue_name,
};
pub use credential::{Choice, EntraKind, Secret, select as select_credential};
pub use error::{AzureError, Fault};
pub use sas::account_sas;

pub use backend::{AzureBackend, BACKEND, url_from_legacy_env};

use super::{AckOutcome, Delivery, Depth, Queue, QueueError, Receipt};

/// This backend's receipt: the message id and its latest pop receipt (each visibility update issues a new one).
#[derive(Clone, Debug, PartialEq, Eq)]
struct AzureReceipt {
    id: String,
    pop: String,
    /// Until when no one else can receive the message: the lease counted from *before* the request that
    /// set it, so never later than the service's own `TimeNextVisible`.
    ours_until: Instant,
}

/// Most PUTs of one publish batch in flight at once. The producer's own `--concurrency` multiplies this.
pub const PUBLISH_FANOUT: usize = 32;
/// Most messages one receive returns: the service's limit.
const RECEIVE_MAX: usize = 32;
/// Concurrent deletes or updates in one ack/release/extend.
const SETTLE_FANOUT: usize = 32;
/// Rounds of deletes in one ack: the first, then those still without an answer, after
/// `DELETE_RETRY_PAUSE × round`.
const DELETE_ATTEMPTS: u32 = 3;
const DELETE_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A queue on Azure Storage (or Azurite). Cheap to share: every method takes `&self` and many calls may run
/// at once over one pooled HTTP client.
pub struct AzureQueue {
    client: QueueClient,
    url: AzureUrl,
    endpoint: String,
    credential: String,
}

/// What [`AzureQueue::open`] looked for before it fell back to Entra ID.
const NOT_FOUND: &str = "none of AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN is set";
/// How to give a credential, for the error that says none was found.
const HOW_TO_GIVE: &str = "Set AZURE_STORAGE_ACCOUNT_KEY (the account's access key; Azurite's is its well-known devstoreaccount1 key), AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING";

impl AzureQueue {
    /// Opens the queue, creating it when missing, with the credential [`credential::select`] picks from the
    /// environment. Checks the credential on the way (a wrong key fails here, with the 403).
    pub async fn open(url: AzureUrl) -> Result<AzureQueue, QueueError> {
        Self::open_with_env(url, &|k: &str| std::env::var(k).ok()).await
    }

    /// [`AzureQueue::open`] with the environment read through `env` (tests pass their own, so that they do
    /// not have to change the process environment).
    pub async fn open_with_env(
        url: AzureUrl,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<AzureQueue, QueueError> {
        let (choice, conn) = credential::select(url.auth, &url.account, env).map_err(|detail| {
            AzureError::setup(&url.account, &url.queue, "choose a credential", detail)
        })?;
        let endpoint = url.endpoint_or(conn.as_ref().map(|c| c.queue_endpoint.as_str()));
        // auth=auto found no key and no SAS. Entra ID sends its token only over https, so against an http://
        // endpoint (Azurite) it cannot work: say what was looked for instead of the SDK's "must use https".
        let fell_back = url.auth == AuthMode::Auto && matches!(choice, Choice::Entra(_));
        if fell_back && endpoint.starts_with("http://") {
            return Err(AzureError::setup(
                &url.account,
                &url.queue,
                "choose a credential",
                format!(
                    "no credential: {NOT_FOUND}; Entra ID is not tried because {endpoint} is http:// and an Entra ID token is only sent over https. {HOW_TO_GIVE}"
                ),
            )
            .into());
        }
        let mut options = QueueClientOptions {
            client_options: ClientOptions {
                retry: RetryOptions::none(),
                transport: Some(transport().map_err(|detail| {
                    AzureError::setup(&url.account, &url.queue, "build the HTTP client", detail)
                })?),
                ..Default::default()
            },
            version: url.api_version.clone(),
        };
        let mut queue_url = format!("{endpoint}/{}", url.queue);
        let mut token = None;
        match &choice {
            Choice::Key { key, .. } => options
                .client_options
                .per_try_policies
                .push(shared_key::SharedKeyPolicy::new(&url.account, key)),
            Choice::Sas { token: sas, .. } => {
                queue_url.push('?');
                queue_url.push_str(sas.expose());
            }
            Choice::Entra(kind) => {
                token = Some(entra_credential(*kind).map_err(|e| {
                    let detail = format!("Entra ID ({kind:?}): {}", error::redact(&e.to_string()));
                    AzureError::setup(&url.account, &url.queue, "set up the credential", detail)
                })?)
            }
        }
        let parsed = Url::parse(&queue_url).map_err(|e| {
            invalid(
                &url,
                format!("endpoint {endpoint:?} does not make a valid URL ({e})"),
            )
        })?;
        let client = QueueClient::new(parsed, token, Some(options))
            .map_err(|e| invalid(&url, error::redact(&e.to_string())))?;
        let queue = AzureQueue {
            client,
            credential: choice.describe(),
            endpoint,
            url,
        };
        match queue.ensure_exists().await {
            Ok(()) => Ok(queue),
            // The fallback to Entra ID found no identity either (no workload or managed identity, no `az` or
            // `azd` login): the SDK's error is several lines about developer tools; this one says what to do.
            Err(err)
                if fell_back
                    && err.downcast_ref::<AzureError>().is_some_and(|e| {
                        matches!(e.fault, error::Fault::Other | error::Fault::Setup)
                    }) =>
            {
                let text = err.to_string();
                let first = error::sdk_words(&text);
                Err(AzureError::setup(
                    &queue.url.account,
                    &queue.url.queue,
                    "choose a credential",
                    format!("no credential: {NOT_FOUND}, and Entra ID found no identity ({first}). {HOW_TO_GIVE}, or log in with `az login`"),
                )
                .into())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the queue when it does not exist (so the three roles can start in any order).
    async fn ensure_exists(&self) -> Result<(), QueueError> {
        match self.client.get_properties(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                match self.client.create(None).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
                    Err(e) => Err(self.err("create the queue", e)),
                }
            }
            Err(e) => Err(self.err("open the queue", e)),
        }
    }

    fn err(&self, op: &'static str, e: azure_core::Error) -> QueueError {
        QueueError::from(AzureError::from_sdk(
            &self.url.account,
            &self.url.queue,
            &self.endpoint,
            &self.credential,
            op,
            e,
        ))
    }

    /// The text that goes on the wire for one body, checked against the 64 KiB limit.
    fn encode(&self, body: Vec<u8>) -> Result<String, QueueError> {
        let text = match self.url.encoding {
            Encoding::Base64 => azure_core::base64::encode(&body),
            Encoding::Raw => String::from_utf8(body).map_err(|_| {
                invalid(&self.url, "a body is not UTF-8 text: raw encoding sends text; use encoding=base64 for bytes".into())
            })?,
        };
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::too_large(
                text.len(),
                MAX_MESSAGE_BYTES,
                "an Azure Storage Queue message, after encoding",
            ));
        }
        Ok(text)
    }

    /// The body a consumer sees. A body that is not base64 on a `encoding=base64` queue is handed over
    /// marked, so that the envelope decoder counts it as foreign (it starts with `(`), and a person reading
    /// the consumer's log sees why.
    fn decode(&self, text: String) -> Vec<u8> {
        match self.url.encoding {
            Encoding::Raw => text.into_bytes(),
            Encoding::Base64 => azure_core::base64::decode(text.trim())
                .unwrap_or_else(|_| format!("(not base64) {text}").into_bytes()),
        }
    }

    async fn send_one(&self, text: String) -> Result<(), QueueError> {
        let message = QueueMessage {
            message_text: Some(text),
        };
        let content = message
            .try_into()
            .map_err(|e: azure_core::Error| self.err("serialize a message", e))?;
        // An expiring queue (heartbeats): the message's time to live, in whole seconds (at least 1, Azure's
        // least); without it Azure keeps a message 7 days.
        let options = self.url.expiry.map(|after| QueueClientSendMessageOptions {
            message_time_to_live: Some(visibility_seconds(after, 1)),
            ..Default::default()
        });
        self.client
            .send_message(content, options)
            .await
            .map_err(|e| self.err("send a message", e))?;
        Ok(())
    }

    async fn receive_once(&self, max: usize, lease_s: i32) -> Result<Vec<Delivery>, QueueError> {
        let sent_at = Instant::now();
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(max.clamp(1, RECEIVE_MAX) as i32),
            visibility_timeout: Some(lease_s),
            ..Default::default()
        };
        let got = self
            .client
            .receive_messages(Some(options))
            .await
            .map_err(|e| self.err("receive messages", e))?
            .into_model()
            .map_err(|e| self.err("read received messages", e))?;
        let mut out = Vec::new();
        for m in got.items.unwrap_or_default() {
            let (Some(id), Some(pop)) = (m.message_id, m.pop_receipt) else {
                continue;
            };
            out.push(Delivery {
                body: self.decode(m.message_text.unwrap_or_default()),
                receipt: Receipt::new(AzureReceipt {
                    id,
                    pop,
                    ours_until: sent_at + Duration::from_secs(lease_s.max(0) as u64),
                }),
                deliveries: m.dequeue_count.unwrap_or(1).clamp(1, u32::MAX as i64) as u32,
            });
        }
        Ok(out)
    }

    /// Sets a message's visibility timeout; returns its new pop receipt, or `None` when the lease was lost.
    async fn set_visibility(
        &self,
        id: &str,
        pop: &str,
        seconds: i32,
        op: &'static str,
    ) -> Result<Option<String>, QueueError> {
        match self.client.update_message(id, pop, seconds, None).await {
            Ok(rsp) => Ok(rsp
                .headers()
                .get_optional_string(&HeaderName::from_static("x-ms-popreceipt"))),
            Err(e) if lease_lost(&e) => Ok(None),
            Err(e) => Err(self.err(op, e)),
        }
    }
}

impl AzureQueue {
    /// Deletes one message: `true` when it is gone by this consumer's hand, `false` when the lease was lost.
    ///
    /// A delete can reach the service and its answer be lost (a reset connection, a 503 from an overloaded
    /// server); the retry then finds no message (404). While the lease still holds, no one else can have
    /// received the message, and only a pop receipt's holder can delete it, so it was this consumer's earlier
    /// delete: acked, not lease_lost. Counted as lost, it made `--count` wait for ever for an ack that had
    /// already happened. After the lease, someone else may have taken and deleted it: lost, as before. A
    /// pop receipt that no longer matches (400: a visibility update we did not see the answer of) is lost too.
    async fn delete_one(
        &self,
        id: String,
        pop: String,
        ours_until: Instant,
    ) -> Result<bool, QueueError> {
        match self.client.delete_message(&id, &pop, None).await {
            Ok(_) => Ok(true),
            Err(e) if lease_lost(&e) => {
                Ok(e.http_status() == Some(StatusCode::NotFound) && Instant::now() < ours_until)
            }
            Err(e) => Err(self.err("delete a message", e)),
        }
    }

    async fn release_one(&self, id: String, pop: String, seconds: i32) -> Result<bool, QueueError> {
        Ok(self
            .set_visibility(&id, &pop, seconds, "release a message")
            .await?
            .is_some())
    }

    async fn extend_one(
        &self,
        i: usize,
        id: String,
        pop: String,
        seconds: i32,
    ) -> (usize, Result<Option<String>, QueueError>) {
        (
            i,
            self.set_visibility(&id, &pop, seconds, "extend a lease")
                .await,
        )
    }
}

/// Whether an error on delete/update means "this pop receipt is no longer ours".
fn lease_lost(e: &azure_core::Error) -> bool {
    matches!(
        e.http_status(),
        Some(StatusCode::NotFound) | Some(StatusCode::BadRequest)
    )
}

fn invalid(url: &AzureUrl, reason: String) -> QueueError {
    QueueError::invalid_url(&url.to_string(), &reason)
}

/// Azure receipts, owned (so the concurrent calls borrow nothing but `self`).
fn owned_receipts(receipts: &[Receipt]) -> Result<Vec<AzureReceipt>, QueueError> {
    receipts
        .iter()
        .map(|r| r.get::<AzureReceipt>().cloned())
        .collect()
}

#[async_trait]
impl Queue for AzureQueue {
    async fn publish(&self, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        let texts = bodies
            .into_iter()
            .map(|b| self.encode(b))
            .collect::<Result<Vec<_>, _>>()?;
        if texts.len() == 1 {
            let text = texts.into_iter().next().unwrap_or_default();
            return self.send_one(text).await;
        }
        stream::iter(texts.into_iter().map(Ok))
            .try_for_each_concurrent(PUBLISH_FANOUT, |t| self.send_one(t))
            .await
    }

    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let lease_s = visibility_seconds(lease, 1);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let got = self.receive_once(max, lease_s).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> Result<AckOutcome, QueueError> {
        let receipts = owned_receipts(&receipts)?;
        let mut results: Vec<Option<Result<bool, QueueError>>> = Vec::new();
        results.resize_with(receipts.len(), || None);
        // Deletes without an answer are sent again here, a few times, before the whole ack fails (see
        // [`ack_outcome`]): the rest of the batch need not be deleted twice over.
        for attempt in 0..DELETE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(DELETE_RETRY_PAUSE * attempt).await;
            }
            let unanswered: Vec<(usize, AzureReceipt)> = (0..receipts.len())
                .filter(|&i| !matches!(results[i], Some(Ok(_))))
                .map(|i| (i, receipts[i].clone()))
                .collect();
            let round: Vec<(usize, Result<bool, QueueError>)> = stream::iter(unanswered)
                .map(|(i, r)| async move { (i, self.delete_one(r.id, r.pop, r.ours_until).await) })
                .buffer_unordered(SETTLE_FANOUT)
                .collect()
                .await;
            let failed = round.iter().filter(|(_, r)| r.is_err()).count();
            for (i, r) in round {
                results[i] = Some(r);
            }
            if failed == 0 {
                break;
            }
            tracing::debug!(
                failed,
                attempt,
                "deletes without an answer; sending them again"
            );
        }
        ack_outcome(results.into_iter().flatten().collect())
    }

    async fn release(&self, receipts: Vec<Receipt>, delay: Duration) -> Result<u64, QueueError> {
        let seconds = visibility_seconds(delay, 0);
        let owned = owned_receipts(&receipts)?;
        let results: Vec<Result<bool, QueueError>> = stream::iter(owned)
            .map(|r| self.release_one(r.id, r.pop, seconds))
            .buffer_unordered(SETTLE_FANOUT)
            .collect()
            .await;
        let mut held = 0;
        for r in results {
            if r? {
                held += 1;
            }
        }
        Ok(held)
    }

    async fn extend(
        &self,
        receipts: &mut [Receipt],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        let seconds = visibility_seconds(lease, 1);
        let sent_at = Instant::now();
        let results: Vec<(usize, Result<Option<String>, QueueError>)> =
            stream::iter(owned_receipts(receipts)?.into_iter().enumerate())
                .map(|(i, r)| self.extend_one(i, r.id, r.pop, seconds))
                .buffer_unordered(SETTLE_FANOUT)
                .collect()
                .await;
        let mut kept = vec![false; receipts.len()];
        let mut first_err = None;
        for (i, res) in results {
            match res {
                Ok(Some(new_pop)) => {
                    // Every receipt passed owned_receipts above, so this is ours.
                    if let Ok(r) = receipts[i].get_mut::<AzureReceipt>() {
                        r.pop = new_pop;
                        r.ours_until = sent_at + Duration::from_secs(seconds.max(0) as u64);
                    }
                    kept[i] = true;
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Receipts that were renewed are already updated in place; an error on others is reported so the
        // caller can count it (those keep their old, still valid receipt and lease).
        match first_err {
            Some(e) if !kept.iter().any(|k| *k) => Err(e),
            _ => Ok(kept),
        }
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let approximate = || async {
            let rsp = self
                .client
                .get_properties(None)
                .await
                .map_err(|e| self.err("read the message count", e))?;
            let n = rsp
                .approximate_messages_count()
                .map_err(|e| self.err("read the message count", e))?
                .unwrap_or(0);
            Ok::<u64, QueueError>(n.max(0) as u64)
        };
        let visible = match self.url.depth {
            DepthMode::Approximate => approximate().await?,
            DepthMode::Visible => {
                let options = QueueClientPeekMessagesOptions {
                    number_of_messages: Some(RECEIVE_MAX as i32),
                    ..Default::default()
                };
                let peeked = self
                    .client
                    .peek_messages(Some(options))
                    .await
                    .map_err(|e| self.err("peek messages", e))?
                    .into_model()
                    .map_err(|e| self.err("read peeked messages", e))?;
                let n = peeked.items.map_or(0, |v| v.len());
                if n < RECEIVE_MAX {
                    n as u64
                } else {
                    approximate().await?
                }
            }
        };
        Ok(Depth {
            visible,
            in_flight: None,
        })
    }

    fn max_message_size(&self) -> Option<usize> {
        Some(match self.url.encoding {
            Encoding::Raw => MAX_MESSAGE_BYTES,
            Encoding::Base64 => MAX_MESSAGE_BYTES / 4 * 3,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} at {} ({}, {:?} bodies, api {})",
            self.url, self.endpoint, self.credential, self.url.encoding, self.url.api_version
        )
    }
}
