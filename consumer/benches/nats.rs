//! Producer and consumer throughput and CPU per message against a real nats-server with JetStream, beside a
//! reference client measured in the same rounds: nats-py (the NATS project's Python client, pinned in
//! scripts/test), publishing with JetStream acks and pull-consuming with acks (the `nats` CLI's bench is not
//! packaged for Debian).
//!
//! Each round starts a fresh server (file storage in a temp dir), then, each on its own stream:
//! - ours: `producer --rate 0 --batch 100` publishes N messages of 100 B; then `consumer --count N --work none
//!   --max-in-flight 200 --batch 100` takes them all;
//! - nats-py: `bench-pub` publishes N messages of 100 B with 100 publish acks awaited together; then
//!   `bench-sub` fetches 100 at a time and acks each.
//!
//! Rates are messages over wall time (ours: the whole process, start-up included; nats-py: its own loop, so
//! the interpreter's start-up is not held against it). CPU per message is the client process's user +
//! system time over N (from `wait4`, start-up included on both sides), and the server's CPU over the same
//! run (from /proc). Our acks are requests the server answers (the contract: ack returns once the server
//! processed it); nats-py's `ack()` is a plain publish, cheaper for it and for the server.
//!
//! Targets, checked on the medians: our producer and consumer at least as fast as nats-py's, each with less
//! client CPU per message. Exits non-zero on a missed target.
//!
//! Then the telemetry comparison (issue #14), on one more fresh server: our consumer (`--max-in-flight 200
//! --batch 100`) draining a backlog of `NATS_TELEMETRY_COUNT` (default 50000) with `--telemetry on` (each
//! ack batch's ledger records published to the stream `STREAM-telemetry`, and confirmed, before its acks;
//! heartbeats every second) against `--telemetry off`, alternating, median of `TELEMETRY_BENCH_ROUNDS`
//! (default 5); target ≥ 0.9× the rate. `BENCH_ONLY=telemetry` (or `-- telemetry`) runs only that.
//!
//! Environment: `NATS_BENCH_COUNT` (messages per run, default 20000), `NATS_BENCH_ROUNDS` (default 3),
//! `NATS_PY_VENV` (default target/nats-py). The machine should be otherwise idle.

use std::process::Command;

use testkit::bench::{self, Side, Verdicts};
use testkit::nats::NatsServer;

const SIZE: usize = 100;
const BATCH: usize = 100;

/// Runs `cmd` against `server` for `n` messages; `own_timing` takes the rate from the client's own JSON line
/// (nats-py's loop, without the interpreter's start-up).
fn measure(server: &NatsServer, cmd: Command, n: u64, own_timing: bool) -> (bench::Exited, Side) {
    let pid = server.pid().expect("server pid");
    let (out, mut side) = bench::measure(cmd, n, || bench::proc_cpu(pid));
    if own_timing {
        let v = out.first_json();
        assert_eq!(v["messages"], n, "nats-py: {v}");
        side.rate = n as f64 / v["seconds"].as_f64().expect("seconds");
    }
    (out, side)
}

fn our_producer(server: &NatsServer, stream: &str, n: u64) -> Side {
    let cmd = bench::producer(&server.url(stream, ""), n, SIZE, BATCH);
    let (out, side) = measure(server, cmd, n, false);
    out.expect_all("sent", n);
    side
}

/// Drains `stream` with our consumer: as in the comparison with nats-py (`telemetry` None), or with
/// telemetry on or off.
fn our_consumer(server: &NatsServer, stream: &str, n: u64, telemetry: Option<bool>) -> Side {
    let url = server.url(stream, "");
    let cmd = match telemetry {
        None => bench::consumer(&url, n, BATCH, 200),
        Some(on) => bench::telemetry_consumer(&url, n, BATCH, 200, on),
    };
    let (out, side) = measure(server, cmd, n, false);
    out.expect_all("acked", n);
    assert_eq!(server.jsz_consumer(stream, "workers"), Some((0, 0)));
    if telemetry == Some(true) {
        let records = bench::depth(&server.url(&format!("{stream}-telemetry"), ""));
        assert!(records.visible > 0, "telemetry on, yet no ledger records");
    }
    side
}

fn ours(server: &NatsServer, n: u64) -> (Side, Side) {
    let producer = our_producer(server, "ours", n);
    (producer, our_consumer(server, "ours", n, None))
}

fn reference(server: &NatsServer, n: u64) -> (Side, Side) {
    let address = format!("nats://127.0.0.1:{}", server.port());
    // The stream and consumer, as our producer makes them.
    testkit::nats::depth(&server.url("py", ""));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats_client.py");
    let python = testkit::venv_python("NATS_PY_VENV", "nats-py", "Python's nats-py");
    let (n_s, size, batch) = (n.to_string(), SIZE.to_string(), BATCH.to_string());
    let mut p = Command::new(&python);
    p.arg(script)
        .args(["bench-pub", &address, "py", &n_s, &size, &batch]);
    let producer = measure(server, p, n, true).1;
    let mut c = Command::new(&python);
    c.arg(script)
        .args(["bench-sub", &address, "py", "workers", &n_s, &batch]);
    let consumer = measure(server, c, n, true).1;
    (producer, consumer)
}

fn main() {
    let mut v = Verdicts::default();
    if !bench::telemetry_only() {
        against_nats_py(&mut v);
    }
    let server = NatsServer::start();
    let n = bench::env_or("NATS_TELEMETRY_COUNT", 50_000);
    let what = format!(
        "{}, {n} messages × {SIZE} B, batch {BATCH}, max-in-flight 200",
        server_version()
    );
    let met = bench::telemetry(&what, bench::telemetry_rounds(), |round, on| {
        let stream = format!("tel{round}-{on}");
        our_producer(&server, &stream, n);
        our_consumer(&server, &stream, n, Some(on))
    });
    v.check(met, "consumer with telemetry ≥ 0.9× without");
    drop(server);
    v.finish();
}

fn against_nats_py(v: &mut Verdicts) {
    let n: u64 = bench::env_or("NATS_BENCH_COUNT", 20_000);
    let rounds: usize = bench::env_or("NATS_BENCH_ROUNDS", 3).max(1);
    // [our producer, our consumer, nats-py's producer, nats-py's consumer]
    let mut runs: [Vec<Side>; 4] = Default::default();
    for round in 0..rounds {
        let server = NatsServer::start();
        let ((op, oc), (rp, rc)) =
            bench::in_turn(round, || ours(&server, n), || reference(&server, n));
        println!(
            "  round {round}: producer ours {:>6.0}/s {:>5.1} µs/msg, nats-py {:>6.0}/s {:>5.1} µs/msg; \
             consumer ours {:>6.0}/s {:>5.1} µs/msg, nats-py {:>6.0}/s {:>5.1} µs/msg",
            op.rate,
            op.client_us,
            rp.rate,
            rp.client_us,
            oc.rate,
            oc.client_us,
            rc.rate,
            rc.client_us
        );
        for (i, s) in [op, oc, rp, rc].into_iter().enumerate() {
            runs[i].push(s);
        }
    }
    let m: Vec<Side> = runs.iter().map(|r| Side::medians(r)).collect();
    println!(
        "\nmedians of {rounds} rounds, {n} messages of {SIZE} B, {}:\n\
         role      ours_msgs/s  nats-py_msgs/s  rate_ratio  ours_cpu_us/msg  nats-py_cpu_us/msg  cpu_ratio  server_us/msg(ours, nats-py)",
        server_version()
    );
    for (role, o, r) in [("producer", m[0], m[2]), ("consumer", m[1], m[3])] {
        println!(
            "{role:<8}  {:>11.0}  {:>14.0}  {:>10.2}  {:>15.1}  {:>18.1}  {:>9.2}  {:.1}, {:.1}",
            o.rate,
            r.rate,
            o.rate / r.rate,
            o.client_us,
            r.client_us,
            o.client_us / r.client_us,
            o.server_us,
            r.server_us
        );
        v.check(
            o.rate >= r.rate,
            format!(
                "our {role} at least as fast as nats-py's ({:.0} vs {:.0} msgs/s)",
                o.rate, r.rate
            ),
        );
        v.check(
            o.client_us <= r.client_us,
            format!(
                "our {role} uses less CPU per message than nats-py's ({:.1} vs {:.1} µs)",
                o.client_us, r.client_us
            ),
        );
    }
}

fn server_version() -> String {
    Command::new(testkit::nats::binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}
