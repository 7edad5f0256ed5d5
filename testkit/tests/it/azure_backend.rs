//! The Azure backend against a real Azurite, in process: the lease cycle (extend issues a new pop receipt,
//! the old one is dead), release, depth, every credential kind, a wrong key, and both body encodings.

use std::collections::HashMap;
use std::time::Duration;

use queues::azure::{AzureQueue, AzureUrl, Secret, account_sas};
use queues::{ErrorKind, Queue, QueueError, QueueUrl};
use testkit::azurite::{ACCOUNT, Azurite, KEY};
use testkit::lossy_http::LossyHttp;
use workload::envelope::{DecodeError, Envelope};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn parse(url: &str) -> AzureUrl {
    let parsed = QueueUrl::parse(url).unwrap();
    assert_eq!(parsed.backend(), "azure");
    parsed.settings::<AzureUrl>().expect("an azure URL").clone()
}

async fn open(url: &str, vars: &[(&str, &str)]) -> Result<AzureQueue, QueueError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    AzureQueue::open_with_env(parse(url), &|k| env.get(k).cloned()).await
}

const KEY_ENV: (&str, &str) = ("AZURE_STORAGE_ACCOUNT_KEY", KEY);

fn envelope(seq: u64) -> Vec<u8> {
    Envelope {
        run_id: 7,
        producer_id: 1,
        seq,
        intended_us: 1,
        sent_us: 2,
        work: None,
    }
    .encode(100)
}

#[test]
fn lease_cycle_extend_then_delete_release_and_depth() {
    let az = Azurite::start();
    rt().block_on(async {
        let q = open(&az.url("cycle", ""), &[KEY_ENV]).await.unwrap();
        q.publish((0..3).map(envelope).collect()).await.unwrap();
        assert_eq!(q.depth().await.unwrap().total(), 3);

        let mut got = q
            .receive(32, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.deliveries == 1));
        assert_eq!(Envelope::decode(&got[0].body).unwrap().run_id, 7);
        // Approximate depth counts leased messages; visible-only does not.
        assert_eq!(q.depth().await.unwrap().total(), 3);
        let visible = open(&az.url("cycle", "depth=visible"), &[KEY_ENV])
            .await
            .unwrap();
        assert_eq!(visible.depth().await.unwrap().total(), 0);

        // Extend issues a new pop receipt: the old one can no longer delete.
        let old = got[0].receipt.clone();
        let mut receipts = vec![got[0].receipt.clone()];
        assert_eq!(
            q.extend(&mut receipts, Duration::from_secs(30))
                .await
                .unwrap(),
            vec![true]
        );
        assert_ne!(receipts[0], old, "extend updated the receipt in place");
        let stale = q.ack(vec![old]).await.unwrap();
        assert_eq!((stale.acked, stale.lease_lost), (0, 1));
        let fresh = q.ack(receipts).await.unwrap();
        assert_eq!((fresh.acked, fresh.lease_lost), (1, 0));

        // Release makes a message visible at once, and it comes back as a second delivery.
        let second = got.remove(1);
        assert_eq!(
            q.release(vec![second.receipt], Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        assert_eq!(visible.depth().await.unwrap().total(), 1);
        let again = q
            .receive(32, Duration::from_secs(30), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].deliveries, 2);
        let rest: Vec<_> = again
            .into_iter()
            .chain(got.into_iter().skip(1))
            .map(|d| d.receipt)
            .collect();
        assert_eq!(q.ack(rest).await.unwrap().acked, 2);
        assert_eq!(q.depth().await.unwrap().total(), 0);

        // An empty queue waits about `wait`, no longer.
        let t = std::time::Instant::now();
        let none = q
            .receive(32, Duration::from_secs(30), Duration::from_millis(300))
            .await
            .unwrap();
        assert!(none.is_empty());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    });
}

/// A delete that reached the service but whose answer was lost is retried and finds no message: counted as
/// acked while the lease holds (no one else could have had it), as lease_lost after it. Simulated by
/// deleting with the same receipt twice. Counted as lease_lost, `consumer --count` waited for ever.
#[test]
fn a_retried_delete_counts_as_acked_only_while_the_lease_holds() {
    let az = Azurite::start();
    rt().block_on(async {
        let q = open(&az.url("retried", ""), &[KEY_ENV]).await.unwrap();
        q.publish((0..2).map(envelope).collect()).await.unwrap();
        let held = q
            .receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let first = q.ack(vec![held[0].receipt.clone()]).await.unwrap();
        assert_eq!((first.acked, first.lease_lost), (1, 0));
        let retried = q.ack(vec![held[0].receipt.clone()]).await.unwrap();
        assert_eq!((retried.acked, retried.lease_lost), (1, 0));

        let short = q
            .receive(1, Duration::from_secs(1), Duration::ZERO)
            .await
            .unwrap();
        let first = q.ack(vec![short[0].receipt.clone()]).await.unwrap();
        assert_eq!((first.acked, first.lease_lost), (1, 0));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let late = q.ack(vec![short[0].receipt.clone()]).await.unwrap();
        assert_eq!(
            (late.acked, late.lease_lost),
            (0, 1),
            "after the lease, someone else may have had it"
        );
        assert_eq!(q.depth().await.unwrap().total(), 0);
    });
}

/// Deletes that reach Azurite but whose answers are lost (the proxy closes the connection instead): each is
/// sent again and, finding no message within the lease, counts as acked. Counted as lost, they never came
/// back and a consumer with `--count` waited for ever. Answers lost past the retries fail the whole ack,
/// and the caller's retry counts every receipt once.
#[test]
fn deletes_whose_answers_are_lost_count_as_acked_never_as_lost() {
    let az = Azurite::start();
    let proxy = LossyHttp::start(az.port(), "DELETE");
    rt().block_on(async {
        let endpoint = format!("http://127.0.0.1:{}/{ACCOUNT}", proxy.port());
        let q = open(
            &format!("azure://{ACCOUNT}/lossy?endpoint={endpoint}"),
            &[KEY_ENV],
        )
        .await
        .unwrap();
        q.publish((0..20).map(envelope).collect()).await.unwrap();
        let lease = Duration::from_secs(30);
        let got = q.receive(32, lease, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 20);
        let receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();

        proxy.drop_next(3);
        let out = q.ack(receipts[..10].to_vec()).await.unwrap();
        assert_eq!((out.acked, out.lease_lost), (10, 0));
        assert_eq!(proxy.dropped(), 3, "three answers were lost");

        // Every answer lost, every round: the ack fails, and says nothing was acked or lost.
        proxy.drop_next(u64::MAX);
        assert!(q.ack(receipts[10..].to_vec()).await.is_err());
        assert!(
            proxy.dropped() >= 13,
            "the deletes were sent: {}",
            proxy.dropped()
        );
        proxy.drop_next(0);
        let retried = q.ack(receipts[10..].to_vec()).await.unwrap();
        assert_eq!((retried.acked, retried.lease_lost), (10, 0));
        assert_eq!(q.depth().await.unwrap().total(), 0);
    });
}

#[test]
fn account_key_sas_and_connection_string_each_work() {
    let az = Azurite::start();
    let sas = account_sas(ACCOUNT, &Secret::new(KEY), Duration::from_secs(3600)).unwrap();
    let conn = az.connection_string();
    let conn_sas = format!(
        "QueueEndpoint={};SharedAccessSignature={}",
        az.endpoint(),
        sas.expose()
    );
    rt().block_on(async {
        // The connection string gives the endpoint when the URL has none.
        let bare = format!("azure://{ACCOUNT}/creds");
        for (name, url, vars) in [
            ("key", az.url("creds", ""), vec![KEY_ENV]),
            (
                "sas",
                az.url("creds", ""),
                vec![("AZURE_STORAGE_SAS_TOKEN", sas.expose())],
            ),
            (
                "connection string",
                bare.clone(),
                vec![("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())],
            ),
            (
                "connection string with SAS",
                bare.clone(),
                vec![("AZURE_STORAGE_CONNECTION_STRING", conn_sas.as_str())],
            ),
        ] {
            let q = open(&url, &vars)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            q.publish(vec![envelope(1)])
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = q
                .receive(1, Duration::from_secs(30), Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "{name}");
            assert_eq!(
                q.ack(vec![got.into_iter().next().unwrap().receipt])
                    .await
                    .unwrap()
                    .acked,
                1,
                "{name}"
            );
            assert!(
                !q.describe().contains(KEY) && !q.describe().contains("sig="),
                "{}",
                q.describe()
            );
        }
    });
}

#[test]
fn a_wrong_key_is_a_clear_403_that_names_the_account_and_hides_the_key() {
    let az = Azurite::start();
    let wrong = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ==";
    rt().block_on(async {
        let e = open(
            &az.url("denied", ""),
            &[("AZURE_STORAGE_ACCOUNT_KEY", wrong)],
        )
        .await
        .err()
        .expect("a wrong key is refused");
        let text = e.to_string();
        assert!(text.contains(ACCOUNT) && text.contains("403"), "{text}");
        assert!(
            !text.contains(wrong) && !text.contains("sig") && !text.contains("SharedKey "),
            "{text}"
        );
        assert!(!format!("{e:?}").contains(wrong), "Debug hides the key too");
        assert!(!e.is_throttled());
    });
}

#[test]
fn the_other_encoding_is_foreign_and_oversize_bodies_are_refused() {
    let az = Azurite::start();
    rt().block_on(async {
        let raw = open(&az.url("enc", ""), &[KEY_ENV]).await.unwrap();
        let b64 = open(&az.url("enc", "encoding=base64"), &[KEY_ENV])
            .await
            .unwrap();

        // Same encoding both sides: the envelope survives.
        b64.publish(vec![envelope(1)]).await.unwrap();
        let got = b64
            .receive(1, Duration::from_secs(30), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(Envelope::decode(&got[0].body).unwrap().seq, 1);
        b64.ack(vec![got.into_iter().next().unwrap().receipt])
            .await
            .unwrap();

        // base64 read as raw, and raw read as base64: both foreign, neither an error.
        b64.publish(vec![envelope(2)]).await.unwrap();
        let got = raw
            .receive(1, Duration::from_secs(30), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(Envelope::decode(&got[0].body), Err(DecodeError::Foreign));
        raw.ack(vec![got.into_iter().next().unwrap().receipt])
            .await
            .unwrap();
        raw.publish(vec![envelope(3)]).await.unwrap();
        let got = b64
            .receive(1, Duration::from_secs(30), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(Envelope::decode(&got[0].body), Err(DecodeError::Foreign));
        assert!(got[0].body.starts_with(b"(not base64) mw1 "));

        // 64 KiB after encoding: base64 inflates by 4/3, so its limit on the body is lower.
        assert_eq!(raw.max_message_size(), Some(65536));
        assert_eq!(b64.max_message_size(), Some(49152));
        raw.publish(vec![vec![b'.'; 65536]]).await.unwrap();
        for (q, size) in [(&raw, 65537), (&b64, 49153)] {
            let e = q.publish(vec![vec![b'.'; size]]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
            assert!(e.to_string().contains("65536-byte limit"), "{e}");
        }
    });
}

#[test]
fn unreachable_endpoint_is_a_clear_error() {
    // Nothing listens on the port of a stopped Azurite.
    let mut az = Azurite::start();
    az.stop();
    rt().block_on(async {
        let e = open(&az.url("gone", ""), &[KEY_ENV])
            .await
            .err()
            .expect("no server");
        let text = e.to_string();
        assert!(text.contains("cannot reach http://127.0.0.1:"), "{text}");
        assert!(!text.contains(KEY), "{text}");
    });
}
