//! Producer and consumer throughput and CPU per message against a real RabbitMQ (Debian's 3.10, started by
//! `testkit::amqp`), beside a reference client measured in the same rounds on the same node: pika (the Python
//! client of RabbitMQ's own tutorials, pinned in scripts/test). RabbitMQ's own load tool, PerfTest, is a Java
//! program that Debian does not package.
//!
//! Each round starts a fresh node, then, each on its own durable quorum queue with persistent messages:
//! - ours: `producer --rate 0 --batch 100` publishes N messages of 100 B (publisher confirms, up to a batch
//!   in flight); then `consumer --count N --work none --max-in-flight 200 --batch 100` takes them all;
//! - pika: `pub` publishes N messages of 100 B, each confirmed before the next (pika's blocking channel has
//!   no confirm window); then `sub` consumes with prefetch 200 and one multiple ack per 100.
//!
//! Rates are messages over wall time (ours: the whole process, start-up and connection included; pika: its
//! own loop). CPU per message is the client's user + system time over N (from `wait4`, start-up included on
//! both sides) and the node's (the beam and its helpers, from /proc) over the same run. The node also
//! samples statistics in the background, which lands in both sides' server figures alike.
//!
//! Targets, checked on the medians: our producer and consumer at least as fast as pika's, each with less
//! client CPU per message. Exits non-zero on a missed target.
//!
//! Then the telemetry comparison (issue #14), on one more fresh node: our consumer (`--max-in-flight 200
//! --batch 100`) draining a backlog of `AMQP_TELEMETRY_COUNT` (default 100000: at 20000 a drain lasted
//! 0.3 s, and rounds swung from 0.6× to 1.1×) with `--telemetry on` (each ack batch's ledger records published to the quorum queue `QUEUE-telemetry`, and confirmed, before its
//! acks; heartbeats every second) against `--telemetry off`, alternating, median of `TELEMETRY_BENCH_ROUNDS`
//! (default 5); target ≥ 0.9× the rate. `BENCH_ONLY=telemetry` (or `-- telemetry`) runs only that.
//!
//! Environment: `AMQP_BENCH_COUNT` (messages per run, default 20000), `AMQP_BENCH_ROUNDS` (default 3),
//! `PIKA_PY_VENV` (default target/pika-py). The machine should be otherwise idle.

use std::process::Command;

use testkit::amqp::Rabbit;
use testkit::bench::{self, Side, Verdicts};

const SIZE: usize = 100;
const BATCH: usize = 100;

/// The node's CPU seconds so far: every process of it.
fn node_cpu(r: &Rabbit) -> f64 {
    r.pids()
        .into_iter()
        .map(|p| bench::proc_cpu(p as u32))
        .sum()
}

/// Runs `cmd` against the node for `n` messages; `own_timing` takes the rate from the client's own JSON
/// line (pika's loop).
fn measure(r: &Rabbit, mut cmd: Command, n: u64, own_timing: bool) -> (bench::Exited, Side) {
    cmd.env_remove("AMQP_PASSWORD");
    let (out, mut side) = bench::measure(cmd, n, || node_cpu(r));
    if own_timing {
        let v = out.first_json();
        assert_eq!(v["messages"], n, "pika: {v}");
        side.rate = n as f64 / v["seconds"].as_f64().expect("seconds");
    }
    (out, side)
}

fn our_producer(r: &Rabbit, queue: &str, n: u64) -> Side {
    let cmd = bench::producer(&r.url(queue, ""), n, SIZE, BATCH);
    let (out, side) = measure(r, cmd, n, false);
    out.expect_all("sent", n);
    side
}

/// Drains `queue` with our consumer: as in the comparison with pika (`telemetry` None), or with telemetry on
/// or off.
fn our_consumer(r: &Rabbit, queue: &str, n: u64, telemetry: Option<bool>) -> Side {
    let url = r.url(queue, "");
    let cmd = match telemetry {
        None => bench::consumer(&url, n, BATCH, 200),
        Some(on) => bench::telemetry_consumer(&url, n, BATCH, 200, on),
    };
    let (out, side) = measure(r, cmd, n, false);
    out.expect_all("acked", n);
    assert_eq!(testkit::amqp::depth(&url).visible, 0, "drained");
    if telemetry == Some(true) {
        let records = testkit::amqp::depth(&r.url(&format!("{queue}-telemetry"), ""));
        assert!(records.visible > 0, "telemetry on, yet no ledger records");
        // How well the records were grouped: each is one publish, confirmed, on the node.
        println!(
            "    {} ledger records for {n} messages ({:.0} messages per record)",
            records.visible,
            n as f64 / records.visible as f64
        );
    }
    side
}

fn ours(r: &Rabbit, n: u64) -> (Side, Side) {
    let producer = our_producer(r, "ours", n);
    (producer, our_consumer(r, "ours", n, None))
}

fn pika(r: &Rabbit, n: u64) -> (Side, Side) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/amqp_reference.py");
    let python = testkit::venv_python("PIKA_PY_VENV", "pika-py", "Python's pika");
    let run = |mode: &str, last: usize| {
        let mut cmd = Command::new(&python);
        cmd.arg(script)
            .args([mode, &r.port().to_string(), "pika"])
            .args([n.to_string(), last.to_string()]);
        measure(r, cmd, n, true).1
    };
    let producer = run("pub", SIZE);
    let consumer = run("sub", BATCH);
    assert_eq!(
        testkit::amqp::depth(&r.url("pika", "")).visible,
        0,
        "drained"
    );
    (producer, consumer)
}

fn main() {
    let mut v = Verdicts::default();
    if !bench::telemetry_only() {
        against_pika(&mut v);
    }
    let r = Rabbit::start();
    let n = bench::env_or("AMQP_TELEMETRY_COUNT", 100_000);
    let what = format!(
        "RabbitMQ 3.10, quorum queues, {n} persistent messages × {SIZE} B, batch {BATCH}, max-in-flight 200"
    );
    let met = bench::telemetry(&what, bench::telemetry_rounds(), |round, on| {
        let queue = format!("tel{round}-{on}");
        our_producer(&r, &queue, n);
        our_consumer(&r, &queue, n, Some(on))
    });
    v.check(met, "consumer with telemetry ≥ 0.9× without");
    drop(r);
    v.finish();
}

fn against_pika(v: &mut Verdicts) {
    let n: u64 = bench::env_or("AMQP_BENCH_COUNT", 20_000);
    let rounds: usize = bench::env_or("AMQP_BENCH_ROUNDS", 3).max(1);
    // [our producer, pika's producer, our consumer, pika's consumer]
    let mut sides: [Vec<Side>; 4] = Default::default();
    for round in 0..rounds {
        let r = Rabbit::start();
        let (o, p) = bench::in_turn(round, || ours(&r, n), || pika(&r, n));
        for (i, s) in [o.0, p.0, o.1, p.1].into_iter().enumerate() {
            sides[i].push(s);
        }
        println!(
            "  round {round}: producer ours {:>6.0}/s {:>6.2} µs/msg (node {:>6.2}), pika {:>6.0}/s {:>6.2} µs/msg (node {:>6.2}); \
             consumer ours {:>6.0}/s {:>6.2} µs/msg (node {:>6.2}), pika {:>6.0}/s {:>6.2} µs/msg (node {:>6.2})",
            o.0.rate,
            o.0.client_us,
            o.0.server_us,
            p.0.rate,
            p.0.client_us,
            p.0.server_us,
            o.1.rate,
            o.1.client_us,
            o.1.server_us,
            p.1.rate,
            p.1.client_us,
            p.1.server_us,
        );
    }
    let m: Vec<Side> = sides.iter().map(|s| Side::medians(s)).collect();
    let (p_ratio, c_ratio) = (
        bench::rate_ratio(&sides[0], &sides[1]),
        bench::rate_ratio(&sides[2], &sides[3]),
    );
    println!(
        "RabbitMQ 3.10, quorum queue, {n} persistent messages × {SIZE} B, medians of {rounds} rounds:"
    );
    for (what, o, p, r) in [
        ("producer", m[0], m[1], p_ratio),
        ("consumer", m[2], m[3], c_ratio),
    ] {
        println!(
            "  {what}: ours {:.0} msgs/s, {:.2} µs CPU/msg (node {:.2}); pika {:.0} msgs/s, {:.2} µs CPU/msg (node {:.2}); ratio {r:.2}",
            o.rate, o.client_us, o.server_us, p.rate, p.client_us, p.server_us,
        );
        v.check(r >= 1.0, format!("{what} at least pika's rate: {r:.2}"));
        v.check(
            o.client_us < p.client_us,
            format!("{what} below pika's CPU/msg"),
        );
    }
}
