//! The NSQ backend (our client) against the fake nsqd, through the queue trait: the contract of
//! `queues`, and the properties `tokio-nsq` 0.14 lacks (README, dependency section): a consumer can
//! stop taking messages and drain (RDY 0, CLS); a refused FIN does not end the connection; a dropped
//! connection fails the commands waiting on it instead of throwing them away; the client reconnects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use queues::Queue;
use testkit::fake_nsqd::FakeNsqd;

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn open(fake: &FakeNsqd) -> Arc<dyn Queue> {
    queues::open(&fake.url("t", "c")).await.unwrap()
}

const LEASE: Duration = Duration::from_secs(1);

/// Receives until `n` messages have arrived or 5 s pass.
async fn receive_n(q: &dyn Queue, n: usize) -> Vec<queues::Delivery> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n && Instant::now() < deadline {
        got.extend(
            q.receive(n - got.len(), LEASE, Duration::from_millis(100))
                .await
                .unwrap(),
        );
    }
    got
}

#[test]
fn publish_receive_ack_and_depth_match_the_fakes_stats() {
    let fake = FakeNsqd::start();
    run(async {
        let q = open(&fake).await;
        q.publish(vec![b"one".to_vec()]).await.unwrap();
        q.publish((0..99).map(|i| format!("m{i}").into_bytes()).collect())
            .await
            .unwrap();
        // The producer created the channel, so the backlog shows before any consumer.
        let d = q.depth().await.unwrap();
        assert_eq!((d.visible, d.in_flight), (100, Some(0)));
        assert_eq!(fake.channel_depth("t", "c"), (100, 0, 0));
        let got = receive_n(&*q, 40).await;
        assert_eq!(got.len(), 40);
        assert_eq!(got[0].body, b"one");
        assert!(got.iter().all(|d| d.deliveries == 1));
        let d = q.depth().await.unwrap();
        assert_eq!(
            (d.visible, d.in_flight),
            (60, Some(40)),
            "depth excludes in-flight"
        );
        let out = q
            .ack(got.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!((out.acked, out.lease_lost), (40, 0));
        // RDY stays at the window: nsqd refills it, so in-flight counts what it pushed since.
        assert!(testkit::eventually(Duration::from_secs(2), || {
            let (d, f, _) = fake.channel_depth("t", "c");
            d + f == 60 && f == 40
        }));
    });
}

#[test]
fn unacked_messages_come_back_after_the_lease_and_extend_keeps_them() {
    let fake = FakeNsqd::start();
    run(async {
        let q = open(&fake).await;
        q.publish(vec![b"a".to_vec(), b"b".to_vec()]).await.unwrap();
        let mut got = receive_n(&*q, 2).await;
        assert_eq!(got.len(), 2);
        let kept = got.pop().unwrap();
        let mut receipts = vec![kept.receipt.clone()];
        // Hold both past the 1 s lease, touching only one of them.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(350)).await;
            assert_eq!(q.extend(&mut receipts, LEASE).await.unwrap(), vec![true]);
        }
        let again = receive_n(&*q, 1).await;
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].body.as_slice(), again[0].deliveries),
            (got[0].body.as_slice(), 2)
        );
        // The lapsed lease's receipt is stale (nsqd redelivered the same id): lease lost, nothing sent.
        let first = q.ack(vec![got.remove(0).receipt]).await.unwrap();
        assert_eq!((first.acked, first.lease_lost), (0, 1));
        let second = q.ack(receipts).await.unwrap();
        assert_eq!((second.acked, second.lease_lost), (1, 0));
        let out = q.ack(vec![again[0].receipt.clone()]).await.unwrap();
        assert_eq!((out.acked, out.lease_lost), (1, 0));
        assert!(testkit::eventually(Duration::from_secs(2), || fake
            .channel_depth("t", "c")
            == (0, 0, 0)));
    });
}

#[test]
fn release_with_a_delay_defers_the_message() {
    let fake = FakeNsqd::start();
    run(async {
        let q = open(&fake).await;
        q.publish(vec![b"x".to_vec()]).await.unwrap();
        let got = receive_n(&*q, 1).await;
        let released = q
            .release(vec![got[0].receipt.clone()], Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(released, 1);
        assert!(testkit::eventually(Duration::from_secs(1), || fake
            .channel_depth("t", "c")
            == (0, 0, 1)));
        let again = receive_n(&*q, 1).await;
        assert_eq!(again[0].deliveries, 2);
    });
}

#[test]
fn stop_receiving_sends_rdy_0_and_cls_gives_back_the_unseen_and_acks_still_work() {
    let fake = FakeNsqd::start();
    run(async {
        let q = open(&fake).await;
        q.publish((0..50).map(|i| format!("m{i}").into_bytes()).collect())
            .await
            .unwrap();
        // Ask for 1 with a window of 20: nsqd pushes up to 20, of which we hand out 1.
        let first = q
            .receive(20, LEASE, Duration::from_millis(500))
            .await
            .unwrap();
        assert!(!first.is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
        q.stop_receiving().await.unwrap();
        assert!(
            q.receive(10, LEASE, Duration::from_millis(100))
                .await
                .unwrap()
                .is_empty()
        );
        let handed = first.len() as u64;
        assert!(
            testkit::eventually(Duration::from_secs(2), || fake.channel_depth("t", "c")
                == (50 - handed, handed, 0)),
            "what arrived but was not handed out went back: {:?}",
            fake.channel_depth("t", "c")
        );
        let out = q
            .ack(first.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!(out.acked, handed);
        assert!(testkit::eventually(Duration::from_secs(2), || fake
            .channel_depth("t", "c")
            == (50 - handed, 0, 0)));
    });
}

#[test]
fn publish_fails_while_nsqd_is_down_and_works_when_it_is_back() {
    let mut fake = FakeNsqd::start();
    let url = fake.url("t", "c");
    fake.stop();
    run(async {
        let q = queues::open(&url).await.expect("opening connects nothing");
        let e = q.publish(vec![b"x".to_vec()]).await.unwrap_err();
        assert!(e.to_string().contains("cannot connect to nsqd"), "{e}");
        assert!(q.depth().await.is_err());
    });
    fake.start_again();
    run(async {
        let q = queues::open(&url).await.unwrap();
        q.publish(vec![b"x".to_vec()]).await.unwrap();
    });
    assert_eq!(fake.published("t"), 1);
}

#[test]
fn a_restart_fails_waiting_calls_and_both_sides_reconnect() {
    let mut fake = FakeNsqd::start();
    let url = fake.url("t", "c");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let q = rt.block_on(queues::open(&url)).unwrap();
    rt.block_on(async {
        q.publish(vec![b"1".to_vec(), b"2".to_vec()]).await.unwrap();
        assert_eq!(receive_n(&*q, 1).await.len(), 1);
    });
    fake.stop();
    fake.start_again();
    rt.block_on(async {
        // The old connection is gone: the first call may fail, a later one reconnects.
        let mut ok = false;
        for _ in 0..20 {
            if q.publish(vec![b"3".to_vec()]).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "publish works again after the restart");
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 3 && Instant::now() < deadline {
            match q.receive(10, LEASE, Duration::from_millis(100)).await {
                Ok(d) => got.extend(d),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let mut bodies: Vec<Vec<u8>> = got.iter().map(|d| d.body.clone()).collect();
        bodies.sort();
        assert_eq!(bodies, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        let out = q
            .ack(got.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!(out.acked, 3);
    });
    assert!(testkit::eventually(Duration::from_secs(2), || fake
        .channel_depth("t", "c")
        == (0, 0, 0)));
}

#[test]
fn receipts_of_a_dropped_connection_are_reported_lost_not_sent_elsewhere() {
    let mut fake = FakeNsqd::start();
    let url = fake.url("t", "c");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let q = rt.block_on(queues::open(&url)).unwrap();
    let got = rt.block_on(async {
        q.publish(vec![b"1".to_vec()]).await.unwrap();
        receive_n(&*q, 1).await
    });
    fake.stop();
    fake.start_again();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = q
            .ack(got.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
        assert_eq!((out.acked, out.lease_lost), (0, 1));
    });
}

#[test]
fn oversized_messages_and_bad_urls_are_clear_errors() {
    let fake = FakeNsqd::start();
    run(async {
        let q = open(&fake).await;
        assert_eq!(q.max_message_size(), Some(1024 * 1024));
        let e = q
            .publish(vec![vec![b'x'; 1024 * 1024 + 1]])
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("over the 1048576-byte limit of nsqd's --max-msg-size"),
            "{e}"
        );
        // A larger limit in the URL is nsqd's to refuse: E_BAD_MESSAGE, before the body is read.
        let q = queues::open(&format!("{}&max_msg_size=4000000", fake.url("t", "c")))
            .await
            .unwrap();
        let e = q.publish(vec![vec![b'x'; 2_000_000]]).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("E_BAD_MESSAGE PUB message too big 2000000 > 1048576"),
            "{e}"
        );
        // MPUB batches bigger than nsqd's 5 MiB body limit are split, not refused.
        q.publish(vec![vec![b'y'; 1_000_000]; 8]).await.unwrap();
    });
    assert_eq!(fake.published("t"), 8);
    run(async {
        for (url, needle) in [
            ("nsq://127.0.0.1:4150/t", "a topic and a channel are needed"),
            ("nsq://127.0.0.1:4150/t!/c", "invalid topic name"),
            ("nsq://127.0.0.1:x/t/c", "port"),
        ] {
            let e = queues::open(url)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(needle), "{url}: {e}");
        }
    });
}

/// A one-route nsqlookupd: answers every request with `body`. Returns its address.
fn fake_lookupd(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    addr
}

#[test]
fn nsqd_is_found_through_nsqlookupd() {
    let fake = FakeNsqd::start();
    let answer = format!(
        r#"{{"channels":["c"],"producers":[{{"remote_address":"x","hostname":"h","broadcast_address":"127.0.0.1","tcp_port":{},"http_port":{},"version":"1.3.0"}}]}}"#,
        fake.tcp_addr().port(),
        fake.http_addr().port()
    );
    let lookupd = fake_lookupd(answer);
    run(async {
        let q = queues::open(&format!("nsq:///t/c?lookupd={lookupd}"))
            .await
            .unwrap();
        q.publish(vec![b"found".to_vec()]).await.unwrap();
        assert_eq!(q.depth().await.unwrap().visible, 1);
        let got = receive_n(&*q, 1).await;
        assert_eq!(got[0].body, b"found");
    });
    let empty = fake_lookupd(r#"{"channels":[],"producers":[]}"#.into());
    run(async {
        let q = queues::open(&format!("nsq:///t/c?lookupd={empty}"))
            .await
            .unwrap();
        let e = q.publish(vec![b"x".to_vec()]).await.unwrap_err();
        assert!(e.to_string().contains("knows no nsqd for topic"), "{e}");
    });
}

#[test]
fn tls_refuses_an_nsqd_without_tls_and_a_bad_ca_file() {
    let fake = FakeNsqd::start();
    run(async {
        let q = queues::open(&format!("{}&tls=true", fake.url("t", "c")))
            .await
            .unwrap();
        let e = q.publish(vec![b"x".to_vec()]).await.unwrap_err();
        assert!(e.to_string().contains("nsqd does not offer it"), "{e}");
        let e = queues::open(&format!(
            "{}&tls=true&ca=/nonexistent/ca.pem",
            fake.url("t", "c")
        ))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("cannot read CA file"), "{e}");
    });
}
