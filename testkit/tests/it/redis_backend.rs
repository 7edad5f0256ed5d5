//! The Redis Streams backend against a real redis-server, in process, through the queue trait: the lease cycle
//! (expiry and redelivery by XAUTOCLAIM with a higher count, lease_lost for the old holder), release now and
//! with a delay, extend, trimming, depth against the server's own figures, error kinds from real replies
//! (WRONGPASS, NOAUTH, WRONGTYPE, OOM), a missing queue, foreign entries, and a reconnect after a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use queues::redis::{RedisQueue, RedisUrl};
use queues::{Depth, ErrorKind, OpenMode, Queue, QueueError, QueueUrl};
use testkit::redis::RedisServer;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn parse(url: &str) -> RedisUrl {
    let parsed = QueueUrl::parse(url).unwrap();
    assert_eq!(parsed.backend(), "redis");
    parsed.settings::<RedisUrl>().expect("a redis URL").clone()
}

fn open_env(url: &str, vars: &[(&str, &str)]) -> RedisQueue {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RedisQueue::new(parse(url), &|k| env.get(k).cloned()).unwrap()
}

fn open(url: &str) -> RedisQueue {
    open_env(url, &[])
}

const LEASE: Duration = Duration::from_millis(400);

fn bodies(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("m{i}").into_bytes()).collect()
}

fn depth(visible: u64, in_flight: u64) -> Depth {
    Depth {
        visible,
        in_flight: Some(in_flight),
    }
}

#[test]
fn lease_expiry_redelivers_with_a_higher_count_and_the_old_holder_loses_its_ack() {
    let server = RedisServer::start();
    let url = server.url("cycle", "");
    rt().block_on(async {
        let a = open(&url);
        let b = open(&url);
        assert_ne!(a.consumer_name(), b.consumer_name());
        a.publish(bodies(3)).await.unwrap();
        assert_eq!(a.depth().await.unwrap(), depth(3, 0));

        let got = a.receive(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.deliveries == 1));
        assert_eq!(b.depth().await.unwrap(), depth(0, 3));
        // Leased: b gets nothing, even after a blocking wait.
        let none = b
            .receive(10, LEASE, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(none.is_empty());

        tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
        let again = b.receive(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 3, "expired leases are claimed");
        assert!(
            again.iter().all(|d| d.deliveries == 2),
            "a claim counts a delivery"
        );
        let mut bodies_again: Vec<_> = again.iter().map(|d| d.body.clone()).collect();
        bodies_again.sort();
        assert_eq!(bodies_again, bodies(3));

        // a's receipts are dead: reported, not acked from under b.
        let out = a
            .ack(got.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!((out.acked, out.lease_lost), (0, 3));
        assert_eq!(a.depth().await.unwrap(), depth(0, 3), "b still holds them");
        let out = b
            .ack(again.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!((out.acked, out.lease_lost), (3, 0));
        assert_eq!(a.depth().await.unwrap(), depth(0, 0));
        // Acked entries are trimmed: XLEN is what is left to do.
        assert_eq!(server.figures("cycle", "cycle"), (0, 0, Some(0)));
    });
}

/// An ack sent again (its first reply lost: a timeout, a reset connection) finds its entries pending to no
/// one. Within the lease that was our own ack: acked, not lost (counted lost, its message gone, a consumer
/// with `--count` waited for ever). After the lease someone else may have had it: lost, as before.
#[test]
fn an_ack_sent_again_counts_as_acked_only_while_the_lease_holds() {
    let server = RedisServer::start();
    let url = server.url("again", "");
    rt().block_on(async {
        let q = open(&url);
        q.publish(bodies(4)).await.unwrap();
        let got = q
            .receive(2, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();
        let first = q.ack(receipts.clone()).await.unwrap();
        assert_eq!((first.acked, first.lease_lost), (2, 0));
        let again = q.ack(receipts).await.unwrap();
        assert_eq!(
            (again.acked, again.lease_lost),
            (2, 0),
            "our own ack, again"
        );

        let short = q.receive(2, LEASE, Duration::ZERO).await.unwrap();
        let receipts: Vec<_> = short.into_iter().map(|d| d.receipt).collect();
        let first = q.ack(receipts.clone()).await.unwrap();
        assert_eq!((first.acked, first.lease_lost), (2, 0));
        tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
        let late = q.ack(receipts).await.unwrap();
        assert_eq!(
            (late.acked, late.lease_lost),
            (0, 2),
            "after the lease, someone else may have had them"
        );
        assert_eq!(q.depth().await.unwrap(), depth(0, 0));
    });
}

#[test]
fn extend_keeps_a_lease_and_release_gives_back_now_or_after_the_delay() {
    let server = RedisServer::start();
    let url = server.url("extend", "");
    rt().block_on(async {
        let a = open(&url);
        let b = open(&url);
        a.publish(bodies(3)).await.unwrap();
        let mut got = a.receive(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 3);
        // Extend twice across more than a lease: b never gets them.
        for _ in 0..3 {
            tokio::time::sleep(LEASE / 2).await;
            let mut receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
            assert_eq!(a.extend(&mut receipts, LEASE).await.unwrap(), vec![true; 3]);
            assert!(
                b.receive(10, LEASE, Duration::ZERO)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        let third = got.pop().unwrap();
        let second = got.pop().unwrap();
        let first = got.pop().unwrap();

        // Release now: visible at once (backlog, not pending), to any consumer, with its count carried.
        assert_eq!(
            a.release(vec![first.receipt.clone()], Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        assert_eq!(a.depth().await.unwrap(), depth(1, 2));
        let back = b.receive(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            (back[0].body.as_slice(), back[0].deliveries),
            (first.body.as_slice(), 2)
        );
        // Released twice is released once.
        assert_eq!(
            a.release(vec![first.receipt], Duration::ZERO)
                .await
                .unwrap(),
            0
        );

        // Release with a delay: claimable only once the delay has passed.
        let delay = Duration::from_millis(250);
        assert_eq!(a.release(vec![second.receipt], delay).await.unwrap(), 1);
        let started = Instant::now();
        let mut later = Vec::new();
        while later.is_empty() && started.elapsed() < Duration::from_secs(3) {
            later = b
                .receive(10, LEASE, Duration::from_millis(20))
                .await
                .unwrap();
        }
        assert!(
            started.elapsed() >= delay - Duration::from_millis(30),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(later.len(), 1);
        assert_eq!(
            (later[0].body.as_slice(), later[0].deliveries),
            (second.body.as_slice(), 2)
        );

        // Leases that ran out are claimed back by anyone, and their old holders' extends say so.
        tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
        let taken = a.receive(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(
            taken.len(),
            3,
            "a claims every expired lease, its own included"
        );
        let mut dead = vec![later[0].receipt.clone(), back[0].receipt.clone()];
        assert_eq!(
            b.extend(&mut dead, LEASE).await.unwrap(),
            vec![false, false]
        );
        let mut own_old = vec![third.receipt];
        assert_eq!(
            a.extend(&mut own_old, LEASE).await.unwrap(),
            vec![false],
            "the claim raised the count"
        );
        let all: Vec<_> = taken.into_iter().map(|d| d.receipt).collect();
        assert_eq!(a.ack(all).await.unwrap().acked, 3);
        assert_eq!(a.depth().await.unwrap(), depth(0, 0));
        assert_eq!(server.figures("extend", "extend"), (0, 0, Some(0)));
    });
}

#[test]
fn depth_is_the_servers_own_figures_while_a_backlog_builds_and_drains() {
    let server = RedisServer::start();
    let url = server.url("depth", "");
    rt().block_on(async {
        let q = open(&url);
        let lease = Duration::from_secs(30);
        let check = |d: Depth, step: &str| {
            let (len, pending, lag) = server.figures("depth", "depth");
            assert_eq!(d.in_flight, Some(pending), "{step}: XPENDING");
            assert_eq!(Some(d.visible), lag, "{step}: XINFO GROUPS lag");
            assert!(len >= d.total(), "{step}: XLEN {len} vs {d:?}");
            len
        };
        let mut held = Vec::new();
        for round in 0..5 {
            q.publish(bodies(200)).await.unwrap();
            held.extend(q.receive(50, lease, Duration::ZERO).await.unwrap());
            // Ack half of what is held, out of order, leaving holes below the newest pending entry.
            let acks: Vec<_> = held
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, d)| d.receipt.clone())
                .collect();
            held = held
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, d)| d)
                .collect();
            q.ack(acks).await.unwrap();
            check(
                q.depth().await.unwrap(),
                &format!("building, round {round}"),
            );
        }
        let d = q.depth().await.unwrap();
        assert!(d.visible > 700 && d.in_flight.unwrap_or(0) > 20, "{d:?}");
        loop {
            let got = q.receive(100, lease, Duration::ZERO).await.unwrap();
            let done = got.is_empty();
            held.extend(got);
            let acks: Vec<_> = held.drain(..).map(|d| d.receipt).collect();
            q.ack(acks).await.unwrap();
            let len = check(q.depth().await.unwrap(), "draining");
            if done {
                assert_eq!(len, 0, "everything acked is trimmed");
                break;
            }
        }
        assert_eq!(q.depth().await.unwrap(), depth(0, 0));
    });
}

#[test]
fn foreign_entries_are_delivered_for_the_consumer_to_count() {
    let server = RedisServer::start();
    let url = server.url("foreign", "");
    rt().block_on(async {
        let q = open(&url);
        q.publish(vec![b"ours".to_vec()]).await.unwrap();
        server.cli(&["XADD", "foreign", "*", "msg", "hello", "n", "1"]);
        let got = q.receive(10, LEASE, Duration::ZERO).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|d| d.body.clone()).collect();
        assert_eq!(bodies, vec![b"ours".to_vec(), b"hello".to_vec()]);
        assert_eq!(
            server
                .cli(&["XRANGE", "foreign", "-", "+", "COUNT", "1"])
                .lines()
                .nth(1),
            Some("body")
        );

        // A watcher does not create a queue that is not there; an existing one opens.
        let missing = parse(&server.url("nowhere", ""));
        let e = queues::Target::open(&missing, OpenMode::Existing)
            .await
            .err();
        assert_eq!(e.map(|e| e.kind()), Some(ErrorKind::NotFound));
        assert_eq!(server.cli(&["EXISTS", "nowhere"]).trim(), "0");
        let found = parse(&url);
        assert!(
            queues::Target::open(&found, OpenMode::Existing)
                .await
                .is_ok()
        );
    });
}

#[test]
fn error_kinds_come_from_the_servers_replies() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let url = server.url("kinds", "");
    rt().block_on(async {
        let kind = |r: Result<(), QueueError>| r.err().map(|e| (e.kind(), e.to_string()));
        // No password, a wrong one, the right one.
        let (k, text) = kind(open(&url).publish(bodies(1)).await).unwrap();
        assert_eq!(k, ErrorKind::Denied, "{text}");
        let wrong = open_env(&url, &[("REDIS_PASSWORD", "nope-nope")]);
        let (k, text) = kind(wrong.publish(bodies(1)).await).unwrap();
        assert_eq!(k, ErrorKind::Denied, "{text}");
        assert!(!text.contains("nope-nope"), "{text}");
        let q = open_env(&url, &[("REDIS_PASSWORD", "s3cret-pw")]);
        q.publish(bodies(1)).await.unwrap();

        // The key holds something else.
        server.cli(&["SET", "not-a-stream", "x"]);
        let other = open_env(
            &server.url("not-a-stream", ""),
            &[("REDIS_PASSWORD", "s3cret-pw")],
        );
        let (k, text) = kind(other.publish(bodies(1)).await).unwrap();
        assert_eq!(k, ErrorKind::Invalid, "{text}");
        assert!(text.contains("WRONGTYPE"), "{text}");

        // Out of memory: the server refuses writes until consumers catch up. Counted as throttling.
        server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
        let e = q.publish(bodies(1)).await.expect_err("refused");
        assert!(e.is_throttled(), "{e}");
        server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    });
    // Nothing reachable: unavailable, and the URL names where.
    let port = server.port();
    drop(server);
    rt().block_on(async {
        let q = open(&format!("redis://127.0.0.1:{port}/gone"));
        let e = q.depth().await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    });
}

#[test]
fn the_client_reconnects_after_a_restart_and_the_durable_server_keeps_everything() {
    let mut server = RedisServer::start_durable();
    let url = server.url("restart", "");
    rt().block_on(async {
        let q = open(&url);
        q.publish(bodies(5)).await.unwrap();
        let got = q
            .receive(2, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        server.kill();
        let e = q.publish(bodies(1)).await.expect_err("server down");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        server.restart();
        // The first call after the restart may still fail on the old connection; then it is back.
        let mut depth = Err(e);
        for _ in 0..20 {
            depth = q.depth().await;
            if depth.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            depth.unwrap(),
            self::depth(3, 2),
            "the AOF kept stream, group and pending list"
        );
        let out = q
            .ack(got.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!(out.acked, 2, "leases survive the restart");
    });
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written as PEM files in `dir`: (ca, cert, key).
fn throwaway_ca(dir: &std::path::Path, name: &str) -> (String, String, String) {
    let (ca, cert, key) =
        testkit::certs::throwaway(&format!("redis test CA {name}")).write(dir, &format!("{name}-"));
    let s = |p: std::path::PathBuf| p.display().to_string();
    (s(ca), s(cert), s(key))
}

#[test]
fn tls_verifies_the_server_against_the_ca_file_and_refuses_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = throwaway_ca(dir.path(), "server");
    let (other_ca, _, _) = throwaway_ca(dir.path(), "other");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = |opts: &str| format!("redis://127.0.0.1:{tls_port}/secure?tls=true{opts}");
    rt().block_on(async {
        let q = open(&url(&format!("&ca={ca}")));
        q.publish(bodies(2)).await.unwrap();
        let got = q.receive(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            q.ack(got.into_iter().map(|d| d.receipt).collect())
                .await
                .unwrap()
                .acked,
            2
        );
        // The web PKI roots alone, or another CA: the handshake fails, nothing is sent.
        for opts in [String::new(), format!("&ca={other_ca}")] {
            let e = open(&url(&opts))
                .publish(bodies(1))
                .await
                .expect_err("untrusted");
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }
    });
    assert_eq!(
        server.cli(&["XLEN", "secure"]).trim(),
        "0",
        "only the trusted client's entries, acked"
    );
}

/// A call made once the server is back succeeds at once, even when the client's last reconnect attempt
/// failed while the server was down: the manager keeps that attempt's "connection refused" until the next
/// call, which (without the backend's second try) failed on it and only then reconnected, so a consumer
/// backed off a second time, up to 5 s, after every restart.
#[test]
fn the_first_call_after_a_restart_succeeds_although_the_last_reconnect_failed() {
    let mut server = RedisServer::start_durable();
    let url = server.url("stale", "");
    rt().block_on(async {
        let q = open(&url);
        q.publish(bodies(3)).await.unwrap();
        server.kill();
        for _ in 0..3 {
            let e = q.depth().await.expect_err("server down");
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }
        // The reconnect those failures started has given up by now (two quick retries, 500 ms apart at most).
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.restart();
        for round in 0..3 {
            let started = Instant::now();
            let d = q.depth().await;
            assert_eq!(
                d.unwrap_or_else(|e| panic!("call {round} after the restart failed: {e}")),
                depth(3, 0),
                "the AOF kept the stream"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    });
}

/// A server restarted without persistence loses the stream and the group, pending list included; a publish
/// makes the stream again, not the group. Receipts from before the restart are then refused as lease lost
/// (not an error retried for ever, which kept a consumer from receiving again), extend and release find nothing
/// held, and the next receive makes the group again and gets what was published since.
#[test]
fn receipts_from_before_a_restart_without_persistence_are_lease_lost_and_receiving_resumes() {
    let mut server = RedisServer::start();
    let url = server.url("amnesia", "");
    rt().block_on(async {
        let q = open(&url);
        q.publish(bodies(3)).await.unwrap();
        let mut got = q
            .receive(3, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        server.stop();
        server.restart();
        // The first call after the restart may still fail on the old connection; then it is back.
        let mut published = Err(QueueError::new(ErrorKind::Other, "not tried"));
        for _ in 0..20 {
            published = q.publish(bodies(2)).await;
            if published.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        published.unwrap();
        let mut receipts: Vec<_> = got.drain(..).map(|d| d.receipt).collect();
        let held = q.extend(&mut receipts[..1], LEASE).await.unwrap();
        assert_eq!(held, vec![false]);
        let released = q
            .release(receipts.split_off(2), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(released, 0);
        let out = q.ack(receipts).await.unwrap();
        assert_eq!((out.acked, out.lease_lost), (0, 2));
        let again = q
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(again.len(), 2, "what was published after the restart");
    });
}
