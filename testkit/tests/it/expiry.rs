//! Heartbeats expire (`QueueUrl::expiring`) on every backend that can expire messages, against its real server:
//! a consumer beats every stats interval whether or not a `scorecard watch` reads the beats, so without an
//! expiry they would pile up for as long as the stack runs. NSQ cannot expire messages (nsqd has no TTL) and
//! says so with `None`.
//!
//! Each check publishes three messages to an expiring sibling and to a plain one, waits past the expiry,
//! publishes one more to each, then takes everything: the plain sibling hands out all four (so the check can
//! fail), the expiring one only the last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queues::{Queue, QueueUrl};

/// Long enough that the fresh message is still live while the check takes it (Azure's least is 1 s).
const EXPIRY: Duration = Duration::from_secs(3);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The expiring and the plain sibling of `work`.
fn siblings(work: &str) -> (QueueUrl, QueueUrl) {
    let work = QueueUrl::parse(work).expect("a queue URL");
    let beats = work.sibling("heartbeat").expect("a sibling");
    let expiring = beats
        .expiring(EXPIRY)
        .expect("this backend expires messages");
    (expiring, work.sibling("plain").expect("a sibling"))
}

/// Every body `q` hands out within `for_at_least` (acked as taken).
async fn take_all(q: &dyn Queue, for_at_least: Duration) -> Vec<String> {
    let until = Instant::now() + for_at_least;
    let mut got = Vec::new();
    while Instant::now() < until {
        let more = q
            .receive(16, Duration::from_secs(30), Duration::from_millis(300))
            .await
            .expect("receive");
        let receipts = more.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>();
        got.extend(
            more.into_iter()
                .map(|d| String::from_utf8_lossy(&d.body).into_owned()),
        );
        if !receipts.is_empty() {
            q.ack(receipts).await.expect("ack");
        }
    }
    got.sort();
    got
}

async fn only_fresh_messages_outlive_the_expiry(expiring: Arc<dyn Queue>, plain: Arc<dyn Queue>) {
    let old = || (0..3).map(|i| format!("old-{i}").into_bytes()).collect();
    expiring.publish(old()).await.expect("publish");
    plain.publish(old()).await.expect("publish");
    tokio::time::sleep(EXPIRY + Duration::from_millis(1000)).await;
    expiring
        .publish(vec![b"fresh".to_vec()])
        .await
        .expect("publish");
    plain
        .publish(vec![b"fresh".to_vec()])
        .await
        .expect("publish");

    // The expiring sibling first, within its expiry of the fresh message.
    let window = Duration::from_secs(2);
    assert_eq!(
        take_all(&*expiring, window).await,
        ["fresh"],
        "the expiring sibling drops what is older than {EXPIRY:?}"
    );
    assert_eq!(
        take_all(&*plain, window).await,
        ["fresh", "old-0", "old-1", "old-2"],
        "the plain sibling keeps everything"
    );
}

async fn check(work: &str) {
    let (expiring, plain) = siblings(work);
    let expiring = expiring.open().await.expect("open the expiring sibling");
    let plain = plain.open().await.expect("open the plain sibling");
    only_fresh_messages_outlive_the_expiry(expiring, plain).await;
}

#[test]
fn sqlite_heartbeats_expire() {
    let dir = tempfile::tempdir().expect("a temp dir");
    rt().block_on(check(&testkit::sqlite_url(dir.path())));
}

#[test]
fn redis_heartbeats_expire() {
    let server = testkit::redis::RedisServer::start();
    rt().block_on(check(&server.url("work", "")));
}

#[test]
fn nats_heartbeats_expire() {
    let server = testkit::nats::NatsServer::start();
    rt().block_on(check(&server.url("work", "")));
}

#[test]
fn rabbitmq_heartbeats_expire() {
    let r = testkit::amqp::Rabbit::start();
    rt().block_on(check(&r.url("work", "")));
}

#[test]
fn azurite_heartbeats_expire() {
    use queues::azure::{AzureQueue, AzureUrl};
    let az = testkit::azurite::Azurite::start();
    let (expiring, plain) = siblings(&az.url("work", ""));
    let key =
        |k: &str| (k == "AZURE_STORAGE_ACCOUNT_KEY").then(|| testkit::azurite::KEY.to_string());
    let open = |url: &QueueUrl| {
        let settings = url.settings::<AzureUrl>().expect("an azure URL").clone();
        async move {
            let q: Arc<dyn Queue> = Arc::new(
                AzureQueue::open_with_env(settings, &key)
                    .await
                    .expect("open"),
            );
            q
        }
    };
    rt().block_on(async {
        let (e, p) = (open(&expiring).await, open(&plain).await);
        only_fresh_messages_outlive_the_expiry(e, p).await;
    });
}

#[test]
fn nsq_cannot_expire_messages_and_says_so() {
    let work = QueueUrl::parse("nsq://127.0.0.1:4150/work/workers").expect("a queue URL");
    let beats = work.sibling("heartbeat").expect("a sibling");
    assert!(beats.expiring(EXPIRY).is_none());
}
