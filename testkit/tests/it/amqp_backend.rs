//! The queue contract on a real RabbitMQ (Debian's 3.10 package, started by `testkit::amqp`): confirmed
//! publishes, leases that run out and are delivered again with a higher count, extend, release with a delay,
//! the drain, depth against the broker's own figures, and the errors a user meets.
//!
//! One node for the whole file (it takes seconds to start, and nextest runs each test in its own process),
//! so this is one test that runs each check on its own queue.

use std::time::{Duration, Instant};

use queues::{ErrorKind, Queue, QueueUrl};
use testkit::amqp::Rabbit;

async fn open(url: &str) -> std::sync::Arc<dyn Queue> {
    queues::open(url).await.expect("open")
}

fn bodies(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{tag}-{i}").into_bytes()).collect()
}

/// Receives until `n` messages are held (a receive hands out what has arrived so far).
async fn take(q: &dyn Queue, n: usize) -> Vec<queues::Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        let more = q
            .receive(
                n - got.len(),
                Duration::from_secs(30),
                Duration::from_secs(5),
            )
            .await
            .expect("receive");
        assert!(!more.is_empty(), "nothing arrived");
        got.extend(more);
    }
    got
}

/// Waits until the management API's figures for `queue` are (ready, unacked).
async fn management_settles(r: &Rabbit, queue: &str, want: (u64, u64)) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = r
            .management_queue(queue)
            .map(|v| {
                (
                    v["messages_ready"].as_u64().unwrap_or(u64::MAX),
                    v["messages_unacknowledged"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .unwrap_or((u64::MAX, u64::MAX));
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_confirms_and_depth_is_exact_at_once(r: &Rabbit) {
    let url = r.url("contract-depth", "");
    let q = open(&url).await;
    q.publish(bodies(25, "a")).await.expect("publish");
    // The passive declare counts what was confirmed, at once.
    assert_eq!(q.depth().await.expect("depth").visible, 25);
    // Take ten, the prefetch, so that what the broker pushed is exactly what we hold.
    let got = take(&*q, 10).await;
    assert!(got.iter().all(|d| d.deliveries == 1));
    let held = got.len() as u64;
    assert_eq!(q.depth().await.expect("depth").visible, 25 - held);
    // The management API agrees once its statistics catch up, and then our in-flight figure is its own.
    assert_eq!(
        management_settles(r, "contract-depth", (25 - held, held)).await,
        (25 - held, held)
    );
    assert_eq!(
        q.depth().await.expect("depth"),
        queues::Depth {
            visible: 25 - held,
            in_flight: Some(held)
        }
    );
    let out = q
        .ack(got.into_iter().map(|d| d.receipt).collect())
        .await
        .expect("ack");
    assert_eq!((out.acked, out.lease_lost), (held, 0));
}

async fn a_lease_that_runs_out_is_delivered_again_and_its_ack_is_lease_lost(r: &Rabbit) {
    let q = open(&r.url("contract-lease", "")).await;
    q.publish(vec![b"one".to_vec()]).await.expect("publish");
    let first = q
        .receive(1, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].deliveries, 1);
    // Not extended: after the lease the broker has it back and delivers it again, counted.
    let again = q
        .receive(1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(again.len(), 1, "redelivered after the lease");
    assert_eq!(again[0].body, b"one");
    assert_eq!(again[0].deliveries, 2, "x-delivery-count");
    let stale = q.ack(vec![first[0].receipt.clone()]).await.expect("ack");
    assert_eq!((stale.acked, stale.lease_lost), (0, 1));
    let mut receipts = vec![first[0].receipt.clone()];
    assert_eq!(
        q.extend(&mut receipts, Duration::from_secs(5))
            .await
            .expect("extend"),
        vec![false]
    );
    let ok = q.ack(vec![again[0].receipt.clone()]).await.expect("ack");
    assert_eq!((ok.acked, ok.lease_lost), (1, 0));
}

async fn extend_keeps_a_lease_and_release_waits_its_delay(r: &Rabbit) {
    let q = open(&r.url("contract-extend", "")).await;
    q.publish(vec![b"x".to_vec()]).await.expect("publish");
    let got = q
        .receive(1, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .expect("receive");
    let mut receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert_eq!(
            q.extend(&mut receipts, Duration::from_secs(1))
                .await
                .expect("extend"),
            vec![true]
        );
        let none = q
            .receive(1, Duration::from_secs(1), Duration::from_millis(400))
            .await
            .expect("receive");
        assert!(none.is_empty(), "an extended lease is not delivered again");
    }
    // Released with 1.5 s of delay: back only after it, counted as a delivery.
    let released_at = Instant::now();
    assert_eq!(
        q.release(receipts, Duration::from_millis(1500))
            .await
            .expect("release"),
        1
    );
    let back = q
        .receive(1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(back.len(), 1);
    assert!(
        released_at.elapsed() >= Duration::from_millis(1400),
        "came back after {:?}",
        released_at.elapsed()
    );
    assert_eq!(back[0].deliveries, 2);
    // Released at once: back at once.
    let receipts = back.into_iter().map(|d| d.receipt).collect();
    assert_eq!(
        q.release(receipts, Duration::ZERO).await.expect("release"),
        1
    );
    let back = q
        .receive(1, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].deliveries, 3);
    q.ack(back.into_iter().map(|d| d.receipt).collect())
        .await
        .expect("ack");
}

async fn stop_receiving_gives_back_what_was_not_handed_out(r: &Rabbit) {
    let q = open(&r.url("contract-drain", "")).await;
    q.publish(bodies(20, "d")).await.expect("publish");
    // A prefetch of 10: the broker sends 10, three are handed out.
    let held: Vec<_> = take(&*q, 3).await.into_iter().map(|d| d.receipt).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.stop_receiving().await.expect("stop");
    // The nacks travel on the consumer's connection, the passive declare on another: allow a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.depth().await.expect("depth").visible != 17 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q.depth().await.expect("depth").visible, 17);
    let none = q
        .receive(5, Duration::from_secs(30), Duration::from_millis(200))
        .await
        .expect("receive");
    assert!(none.is_empty(), "no deliveries after stop_receiving");
    let out = q.ack(held).await.expect("ack after the stop");
    assert_eq!((out.acked, out.lease_lost), (3, 0));
}

/// Acks of a batch go out as one `multiple` frame only where that settles nothing else: a message held
/// (still in work) or released with a delay below or between the acked ones stays unacked at the broker.
async fn one_ack_frame_never_settles_a_message_still_held(r: &Rabbit) {
    let name = "contract-multiple";
    let q = open(&r.url(name, "")).await;
    q.publish(bodies(8, "m")).await.expect("publish");
    let d = take(&*q, 8).await;
    let names: Vec<String> = d
        .iter()
        .map(|x| String::from_utf8_lossy(&x.body).into_owned())
        .collect();
    assert_eq!(names, (0..8).map(|i| format!("m-{i}")).collect::<Vec<_>>());
    let mut held: Vec<Option<queues::Receipt>> = d.into_iter().map(|x| Some(x.receipt)).collect();
    let mut receipt = |i: usize| held[i].take().expect("each receipt used once");
    let ack = async |receipts: Vec<queues::Receipt>| q.ack(receipts).await.expect("ack");
    // The two lowest: one frame settles both.
    let out = ack(vec![receipt(0), receipt(1)]).await;
    assert_eq!((out.acked, out.lease_lost), (2, 0));
    // m-2 released with a delay, m-3 still in work: acking m-4 and m-5 must not settle either.
    assert_eq!(
        q.release(vec![receipt(2)], Duration::from_millis(1500))
            .await
            .expect("release"),
        1
    );
    let out = ack(vec![receipt(5), receipt(4)]).await;
    assert_eq!((out.acked, out.lease_lost), (2, 0));
    assert_eq!(management_settles(r, name, (0, 4)).await, (0, 4));
    let out = ack(vec![receipt(6), receipt(7)]).await;
    assert_eq!((out.acked, out.lease_lost), (2, 0));
    assert_eq!(management_settles(r, name, (0, 2)).await, (0, 2));
    // m-2 comes back after its delay, m-3 was never given up: both acked, nothing left, nothing lost.
    let back = take(&*q, 1).await;
    assert_eq!(back[0].body, b"m-2");
    assert_eq!(back[0].deliveries, 2);
    let mut last: Vec<_> = back.into_iter().map(|x| x.receipt).collect();
    last.push(receipt(3));
    let out = ack(last).await;
    assert_eq!((out.acked, out.lease_lost), (2, 0));
    assert_eq!(management_settles(r, name, (0, 0)).await, (0, 0));
}

async fn errors_a_user_meets(r: &Rabbit) {
    // Over the URL's max_msg_size: refused before anything is sent.
    let q = open(&r.url("contract-errors", "max_msg_size=100")).await;
    let e = q.publish(vec![vec![0; 101]]).await.expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(q.max_message_size(), Some(100));
    // A queue that must exist and does not.
    let missing = QueueUrl::parse(&r.url("contract-missing", "")).expect("url");
    let q = missing.open_existing().await.expect("open is lazy");
    let e = q.depth().await.expect_err("missing queue");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // The same name with type=classic: the existing (quorum) queue is found passively and used as it is.
    let q = open(&r.url("contract-depth", "type=classic")).await;
    q.publish(vec![b"x".to_vec()])
        .await
        .expect("an existing queue is used as it is");
    // A wrong password: denied, and the password appears nowhere.
    // SAFETY: this test binary runs one test, on this thread; nothing else reads the environment now.
    unsafe { std::env::set_var("AMQP_PASSWORD", "hunter2") };
    let q = open(&r.url("contract-errors", "")).await;
    let e = q.publish(vec![b"x".to_vec()]).await.expect_err("denied");
    unsafe { std::env::remove_var("AMQP_PASSWORD") };
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
    assert!(e.to_string().contains("AMQP_PASSWORD"), "{e}");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    // Nothing listening: unavailable, which the binaries retry.
    let q = open("amqp://127.0.0.1:1/q?management=off").await;
    let e = q.publish(vec![b"x".to_vec()]).await.expect_err("down");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

/// Depth while a backlog builds and drains: the passive declare's ready count is exact at every step, and the
/// management API's ready and unacked figures agree with ours once its statistics catch up.
async fn depth_matches_the_broker_while_a_backlog_builds_and_drains(r: &Rabbit) {
    let name = "contract-backlog";
    let q = open(&r.url(name, "")).await;
    let mut expect_ready = 0u64;
    for _ in 0..2 {
        q.publish(bodies(450, "b")).await.expect("publish");
        expect_ready += 450;
        assert_eq!(q.depth().await.expect("depth").visible, expect_ready);
        assert_eq!(
            management_settles(r, name, (expect_ready, 0)).await,
            (expect_ready, 0)
        );
        assert_eq!(q.depth().await.expect("depth").in_flight, Some(0));
    }
    let mut held = Vec::new();
    while !held.is_empty() || expect_ready > 0 {
        // Take up to 300, ack what was held before: ready falls, unacked follows what is held.
        let got = q
            .receive(300, Duration::from_secs(60), Duration::from_secs(5))
            .await
            .expect("receive");
        expect_ready -= got.len() as u64;
        let out = q.ack(std::mem::take(&mut held)).await.expect("ack");
        assert_eq!(out.lease_lost, 0);
        held = got.into_iter().map(|d| d.receipt).collect();
        let unacked = held.len() as u64;
        // The broker may have pushed more than was handed out (the prefetch): those are unacked too, so
        // ours and the broker's are compared with each other, and with what we know, once they settle.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (ours, theirs) = loop {
            let d = q.depth().await.expect("depth");
            let m = r.management_queue(name).map(|v| {
                (
                    v["messages_ready"].as_u64().unwrap_or(u64::MAX),
                    v["messages_unacknowledged"].as_u64().unwrap_or(u64::MAX),
                )
            });
            let ours = (d.visible, d.in_flight.unwrap_or(u64::MAX));
            // Both settle on the broker's state: the ack travels on the consumer's connection, the passive
            // declare on another, and the statistics follow.
            let settled = ours.0 + ours.1 == expect_ready + unacked;
            if (m == Some(ours) && settled) || Instant::now() > deadline {
                break (ours, m);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(Some(ours), theirs, "our depth against the management API");
        let (m_ready, m_unacked) = ours;
        assert!(m_ready <= expect_ready, "{ours:?} vs {expect_ready}");
        assert_eq!(
            m_ready + m_unacked,
            expect_ready + unacked,
            "every message is ready or unacked"
        );
        assert!(m_unacked >= unacked);
    }
    assert_eq!(management_settles(r, name, (0, 0)).await, (0, 0), "drained");
    assert_eq!(
        q.depth().await.expect("depth"),
        queues::Depth {
            visible: 0,
            in_flight: Some(0)
        }
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_contract_on_rabbitmq() {
    let started = Instant::now();
    let r = Rabbit::start();
    eprintln!("RabbitMQ ready in {:?}", started.elapsed());
    let t = Instant::now();
    publish_confirms_and_depth_is_exact_at_once(&r).await;
    eprintln!(
        "publish_confirms_and_depth_is_exact_at_once: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    a_lease_that_runs_out_is_delivered_again_and_its_ack_is_lease_lost(&r).await;
    eprintln!(
        "a_lease_that_runs_out_is_delivered_again_and_its_ack_is_lease_lost: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    extend_keeps_a_lease_and_release_waits_its_delay(&r).await;
    eprintln!(
        "extend_keeps_a_lease_and_release_waits_its_delay: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    stop_receiving_gives_back_what_was_not_handed_out(&r).await;
    eprintln!(
        "stop_receiving_gives_back_what_was_not_handed_out: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    one_ack_frame_never_settles_a_message_still_held(&r).await;
    eprintln!(
        "one_ack_frame_never_settles_a_message_still_held: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    depth_matches_the_broker_while_a_backlog_builds_and_drains(&r).await;
    eprintln!(
        "depth_matches_the_broker_while_a_backlog_builds_and_drains: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    errors_a_user_meets(&r).await;
    eprintln!("errors_a_user_meets: {:?}", t.elapsed());
    eprintln!("all checks in {:?}", started.elapsed());
}
