//! The NATS JetStream backend against a real nats-server (Debian's 2.9.10), in process, through the queue
//! trait: confirmed publishes, leases that expire and come back with a higher delivery count, a late ack
//! reported as lease lost, extend, release with and without delay, depth equal to the server's own `/jsz`
//! figures while a backlog builds and drains, the size limit, credentials, and a server that starts late.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queues::nats::{NatsQueue, url::NatsUrl};
use queues::{Depth, ErrorKind, OpenMode, Queue, QueueUrl};
use testkit::nats::NatsServer;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn parse(url: &str) -> NatsUrl {
    let parsed = QueueUrl::parse(url).unwrap();
    assert_eq!(parsed.backend(), "nats");
    parsed.settings::<NatsUrl>().expect("a nats URL").clone()
}

fn open_with(url: &str, mode: OpenMode, vars: &'static [(&str, &str)]) -> Arc<NatsQueue> {
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    Arc::new(NatsQueue::new(parse(url), mode, &get).unwrap())
}

fn open(url: &str) -> Arc<NatsQueue> {
    open_with(url, OpenMode::Create, &[])
}

fn bodies(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("m{i}").into_bytes()).collect()
}

const LONG: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_millis(200);

/// Our depth, checked against the server's `/jsz` figures for the same consumer.
async fn depth_agrees(q: &NatsQueue, server: &NatsServer, stream: &str) -> Depth {
    let d = q.depth().await.unwrap();
    let jsz = server
        .jsz_consumer(stream, "workers")
        .expect("the consumer is in /jsz");
    assert_eq!(
        (d.visible, d.in_flight.unwrap()),
        jsz,
        "our depth against /jsz"
    );
    d
}

#[test]
fn publish_receive_ack_with_depth_equal_to_the_servers_while_a_backlog_builds_and_drains() {
    let server = NatsServer::start();
    let q = open(&server.url("backlog", ""));
    rt().block_on(async {
        // Builds: three batches of 100.
        for step in 1..=3u64 {
            q.publish(bodies(100)).await.unwrap();
            let d = depth_agrees(&q, &server, "backlog").await;
            assert_eq!((d.visible, d.in_flight), (100 * step, Some(0)));
        }
        // Drains: lease 70 at a time (in flight, then acked).
        let mut left = 300u64;
        while left > 0 {
            let got = q.receive(70, LONG, WAIT).await.unwrap();
            let n = got.len() as u64;
            assert_eq!(n, left.min(70));
            assert!(got.iter().all(|d| d.deliveries == 1));
            let d = depth_agrees(&q, &server, "backlog").await;
            assert_eq!((d.visible, d.in_flight), (left - n, Some(n)));
            let out = q
                .ack(got.into_iter().map(|d| d.receipt).collect())
                .await
                .unwrap();
            assert_eq!((out.acked, out.lease_lost), (n, 0));
            left -= n;
            let d = depth_agrees(&q, &server, "backlog").await;
            assert_eq!((d.visible, d.in_flight), (left, Some(0)));
        }
        // Empty: a receive waits up to `wait`, then returns nothing.
        let t = Instant::now();
        assert!(q.receive(10, LONG, WAIT).await.unwrap().is_empty());
        assert!(t.elapsed() >= WAIT, "{:?}", t.elapsed());
        assert!(
            t.elapsed() < WAIT + Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn a_message_published_while_a_consumer_waits_arrives_at_once() {
    let server = NatsServer::start();
    let url = server.url("prompt", "");
    let q = open(&url);
    rt().block_on(async {
        q.depth().await.unwrap();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let got = q.receive(10, LONG, Duration::from_secs(5)).await.unwrap();
                (got.len(), t.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        open(&url).publish(bodies(1)).await.unwrap();
        let (n, took) = waiter.await.unwrap();
        assert_eq!(n, 1);
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
}

#[test]
fn an_expired_lease_comes_back_with_a_higher_count_and_the_late_ack_is_lease_lost() {
    let server = NatsServer::start();
    let q = open(&server.url("lease", ""));
    let other = open(&server.url("lease", ""));
    rt().block_on(async {
        q.publish(vec![b"x".to_vec()]).await.unwrap();
        let lease = Duration::from_secs(1);
        let first = q.receive(10, lease, WAIT).await.unwrap();
        assert_eq!((first.len(), first[0].deliveries), (1, 1));
        // Held: nobody else gets it.
        assert!(other.receive(10, lease, WAIT).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let second = other
            .receive(10, lease, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(second.len(), 1, "redelivered after the lease");
        assert_eq!(
            (second[0].body.as_slice(), second[0].deliveries),
            (&b"x"[..], 2)
        );
        let late = q.ack(vec![first[0].receipt.clone()]).await.unwrap();
        assert_eq!((late.acked, late.lease_lost), (0, 1));
        let d = other.depth().await.unwrap();
        assert_eq!(
            (d.visible, d.in_flight),
            (0, Some(0)),
            "the late ack removed it"
        );
        // The holder's ack of a message already gone still answers (acks are idempotent on the server).
        let out = other.ack(vec![second[0].receipt.clone()]).await.unwrap();
        assert_eq!((out.acked, out.lease_lost), (1, 0));
    });
}

#[test]
fn extend_keeps_a_lease_past_its_end() {
    let server = NatsServer::start();
    let q = open(&server.url("extend", ""));
    let other = open(&server.url("extend", ""));
    rt().block_on(async {
        q.publish(vec![b"x".to_vec()]).await.unwrap();
        let lease = Duration::from_secs(2);
        let mut got = q.receive(1, lease, WAIT).await.unwrap();
        let mut receipts = vec![got.remove(0).receipt];
        for _ in 0..7 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(q.extend(&mut receipts, lease).await.unwrap(), vec![true]);
        }
        // 3.5 s after the receive, with a 2 s lease: still ours.
        assert!(
            other
                .receive(1, lease, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        let out = q.ack(receipts).await.unwrap();
        assert_eq!((out.acked, out.lease_lost), (1, 0));
    });
}

#[test]
fn release_makes_a_message_available_at_once_or_after_its_delay() {
    let server = NatsServer::start();
    let q = open(&server.url("release", ""));
    rt().block_on(async {
        q.publish(vec![b"a".to_vec(), b"b".to_vec()]).await.unwrap();
        let got = q.receive(2, LONG, WAIT).await.unwrap();
        assert_eq!(got.len(), 2);
        let mut got = got.into_iter();
        let a = got.next().unwrap();
        let b = got.next().unwrap();
        assert_eq!(q.release(vec![a.receipt], Duration::ZERO).await.unwrap(), 1);
        assert_eq!(
            q.release(vec![b.receipt], Duration::from_millis(1_500))
                .await
                .unwrap(),
            1
        );
        // At once: the one released without delay, on its second delivery, long before the 30 s lease.
        let now = q.receive(10, LONG, WAIT).await.unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!((now[0].body.as_slice(), now[0].deliveries), (&b"a"[..], 2));
        // The delayed one only after its delay.
        let t = Instant::now();
        let mut later = Vec::new();
        while later.is_empty() && t.elapsed() < Duration::from_secs(5) {
            later = q.receive(10, LONG, WAIT).await.unwrap();
        }
        assert_eq!(
            (later[0].body.as_slice(), later[0].deliveries),
            (&b"b"[..], 2)
        );
        assert!(
            t.elapsed() >= Duration::from_millis(1_000),
            "{:?}",
            t.elapsed()
        );
        let all = now.into_iter().chain(later).map(|d| d.receipt).collect();
        assert_eq!(q.ack(all).await.unwrap().acked, 2);
    });
}

#[test]
fn an_oversized_message_is_refused_before_anything_is_sent() {
    let server = NatsServer::start();
    let q = open(&server.url("big", "max_msg_size=1000"));
    assert_eq!(q.max_message_size(), Some(1000));
    rt().block_on(async {
        let e = q.publish(vec![vec![b'x'; 1001]]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
        assert_eq!(q.depth().await.unwrap().total(), 0);
        // The server's own max_payload (1 MiB) wins over a larger URL value.
        let q = open(&server.url("big", "max_msg_size=9000000"));
        let e = q.publish(vec![vec![b'x'; 2 << 20]]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
        assert!(e.to_string().contains("1048576"), "{e}");
    });
}

#[test]
fn opening_an_existing_queue_does_not_create_it() {
    let server = NatsServer::start();
    let q = open_with(&server.url("absent", ""), OpenMode::Existing, &[]);
    rt().block_on(async {
        let e = q.depth().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        open(&server.url("absent", "")).depth().await.unwrap();
        assert_eq!(q.depth().await.unwrap().total(), 0);
    });
}

#[test]
fn credentials_from_the_environment_and_a_refusal_that_names_no_secret() {
    let server = NatsServer::start_with(&["--user", "alice", "--pass", "s3cret-pw"]);
    let url = server.url("auth", "");
    rt().block_on(async {
        let good = open_with(
            &url,
            OpenMode::Create,
            &[("NATS_USER", "alice"), ("NATS_PASSWORD", "s3cret-pw")],
        );
        good.publish(bodies(1)).await.unwrap();
        let bad = open_with(
            &url,
            OpenMode::Create,
            &[("NATS_USER", "alice"), ("NATS_PASSWORD", "wrong-pw")],
        );
        let e = bad.depth().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
        assert!(!e.to_string().contains("wrong-pw"), "{e}");
        let none = open(&url);
        assert_eq!(none.depth().await.unwrap_err().kind(), ErrorKind::Denied);
    });
    let server = NatsServer::start_with(&["--auth", "t0ken-value"]);
    rt().block_on(async {
        let q = open_with(
            &server.url("auth", ""),
            OpenMode::Create,
            &[("NATS_TOKEN", "t0ken-value")],
        );
        q.publish(bodies(1)).await.unwrap();
        assert_eq!(q.depth().await.unwrap().visible, 1);
    });
}

#[test]
fn a_server_that_starts_late_is_found_on_the_next_call() {
    let mut server = NatsServer::start();
    let url = server.url("late", "");
    server.stop();
    let q = open(&url);
    rt().block_on(async {
        let e = q.publish(bodies(1)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains("cannot connect to NATS"), "{e}");
    });
    server.restart();
    rt().block_on(async {
        q.publish(bodies(1)).await.unwrap();
        assert_eq!(q.depth().await.unwrap().visible, 1);
    });
}

#[test]
fn receipts_survive_a_server_restart() {
    let mut server = NatsServer::start();
    let q = open(&server.url("restart", ""));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        q.publish(bodies(5)).await.unwrap();
        q.receive(5, LONG, WAIT).await.unwrap()
    });
    assert_eq!(got.len(), 5);
    server.stop();
    server.restart();
    runtime.block_on(async {
        // The client reconnects by itself; until it has, calls fail as Unavailable.
        let receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = loop {
            match q.ack(receipts.clone()).await {
                Ok(out) => break out,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                    assert!(Instant::now() < deadline, "no reconnect: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!((out.acked, out.lease_lost), (5, 0));
        let d = q.depth().await.unwrap();
        assert_eq!((d.visible, d.in_flight), (0, Some(0)));
    });
}

#[test]
fn tls_verifies_the_server_against_the_ca_of_the_url_and_nothing_else() {
    let (server, ca) = NatsServer::start_tls();
    let ca = ca.display().to_string();
    rt().block_on(async {
        let q = open(&server.url("tls", &format!("tls=true&ca={ca}")));
        q.publish(bodies(3)).await.unwrap();
        assert_eq!(q.depth().await.unwrap().visible, 3);
        // Without the CA, the certificate is not trusted: refused, whether the URL or the server asks for TLS.
        for options in ["tls=true", ""] {
            let e = open(&server.url("tls", options)).depth().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{options}: {e}");
            assert!(
                e.to_string().contains("TLS") && e.to_string().contains("ca=FILE"),
                "{options}: {e}"
            );
        }
    });
}
