//! The Redis Streams backend against a real redis-server, beside references measured in the same run on the
//! same server: producer and consumer msgs/s, the client's CPU per message, and the server's.
//!
//! - Producer: ours (`producer --batch 100 --concurrency 1`: one pipelined round trip of 100 `XADD`s at a
//!   time) against `redis-benchmark -c 1 -P 100 XADD …` (Redis's own tool, the same pipelining, the same
//!   body size). redis-benchmark sends the same command over and over and builds nothing per message, so it
//!   is the ceiling of what one connection can push.
//! - Consumer: ours (`consumer --batch 100 --max-in-flight 200 --work none`, ledger off), which per batch runs
//!   `XREADGROUP` and the ack script (ownership check per entry, `XACK`, trim), against a minimal consumer of
//!   the Python `redis` client (`redis_reference.py`: `XREADGROUP COUNT 100`, one `XACK` per batch, no lease
//!   checks, no trimming). redis-benchmark cannot ack what it reads, so it has no consumer figure.
//!
//! Each round runs on a fresh server without persistence (what the server does per message, not the disk),
//! ours and the reference in alternating order. The figures printed are medians over the rounds. Targets
//! (exit non-zero when missed): our producer at least 25 % of redis-benchmark's rate and under 5 µs of CPU per
//! message; our consumer at least as fast as the Python reference and under 10 µs of CPU per message.
//!
//! Then the telemetry comparison (issue #14), on one more fresh server: our consumer draining a backlog of
//! `REDIS_TELEMETRY_COUNT` (default 100000) with `--telemetry on` (each ack batch's ledger records `XADD`ed to
//! `STREAM-telemetry` before its ack, heartbeats every second) against `--telemetry off`, alternating, median
//! of `TELEMETRY_BENCH_ROUNDS` (default 5); target ≥ 0.9× the rate. `BENCH_ONLY=telemetry` (or `-- telemetry`)
//! runs only that.
//!
//! Environment: `REDIS_BENCH_COUNT` (messages per run, default 100000), `REDIS_BENCH_ROUNDS` (default 3),
//! `REDIS_PY_VENV` (the venv with Python's redis, default target/redis-py, made by scripts/test). The machine
//! should be otherwise idle.

use std::process::Command;

use testkit::bench::{self, Side, Verdicts};
use testkit::redis::RedisServer;

const SIZE: usize = 100;
const BATCH: usize = 100;
const TARGET_PRODUCER_RATIO: f64 = 0.25;
const TARGET_PRODUCER_US: f64 = 5.0;
const TARGET_CONSUMER_RATIO: f64 = 1.0;
const TARGET_CONSUMER_US: f64 = 10.0;

/// Runs `cmd` for `n` messages against `server`, measuring the client and the server.
fn measure(server: &RedisServer, cmd: Command, n: u64) -> (bench::Exited, Side) {
    let pid = server.pid().expect("redis-server pid");
    bench::measure(cmd, n, || bench::proc_cpu(pid))
}

fn our_producer(server: &RedisServer, stream: &str, n: u64) -> Side {
    let mut cmd = bench::producer(&server.url(stream, ""), n, SIZE, BATCH);
    cmd.args(["--concurrency", "1"]);
    let (out, side) = measure(server, cmd, n);
    out.expect_all("sent", n);
    side
}

fn reference_producer(server: &RedisServer, stream: &str, n: u64) -> Side {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-c", "1", "-P", &BATCH.to_string(), "-n", &n.to_string()])
        .arg("-q")
        .args(["XADD", stream, "*", "body", &".".repeat(SIZE)]);
    let (_, side) = measure(server, cmd, n);
    let len: u64 = server.cli(&["XLEN", stream]).trim().parse().expect("XLEN");
    assert_eq!(len, n, "redis-benchmark added every entry");
    side
}

/// Fills `stream` with our producer, then drains it with our consumer: as in the comparison with the
/// reference (`telemetry` None), or with telemetry on or off.
fn our_consumer(server: &RedisServer, stream: &str, n: u64, telemetry: Option<bool>) -> Side {
    our_producer(server, stream, n);
    let url = server.url(stream, "");
    let cmd = match telemetry {
        None => bench::consumer(&url, n, BATCH, 200),
        Some(on) => bench::telemetry_consumer(&url, n, BATCH, 200, on),
    };
    let (out, side) = measure(server, cmd, n);
    out.expect_all("acked", n);
    assert_eq!(
        server.figures(stream, stream),
        (0, 0, Some(0)),
        "drained and trimmed"
    );
    if telemetry == Some(true) {
        let records: u64 = server
            .cli(&["XLEN", &format!("{stream}-telemetry")])
            .trim()
            .parse()
            .expect("XLEN");
        assert!(records > 0, "telemetry on, yet no ledger records");
    }
    side
}

fn reference_consumer(server: &RedisServer, stream: &str, n: u64) -> Side {
    reference_producer(server, stream, n);
    server.cli(&["XGROUP", "CREATE", stream, stream, "0"]);
    let mut cmd = Command::new(testkit::venv_python(
        "REDIS_PY_VENV",
        "redis-py",
        "Python's redis",
    ));
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/redis_reference.py"
    ))
    .args([&server.port().to_string(), stream, stream])
    .args([n.to_string(), BATCH.to_string()]);
    let (out, side) = measure(server, cmd, n);
    assert_eq!(
        out.stdout.trim(),
        n.to_string(),
        "the reference read every entry"
    );
    side
}

fn main() {
    let mut v = Verdicts::default();
    if !bench::telemetry_only() {
        against_references(&mut v);
    }
    let server = RedisServer::start();
    let n = bench::env_or("REDIS_TELEMETRY_COUNT", 100_000);
    let what = format!("redis-server, {n} messages × {SIZE} B, batch {BATCH}, max-in-flight 200");
    let met = bench::telemetry(&what, bench::telemetry_rounds(), |round, on| {
        our_consumer(&server, &format!("tel{round}-{on}"), n, Some(on))
    });
    v.check(met, "consumer with telemetry ≥ 0.9× without");
    drop(server);
    v.finish();
}

fn against_references(v: &mut Verdicts) {
    let count: u64 = bench::env_or("REDIS_BENCH_COUNT", 100_000);
    let rounds: usize = bench::env_or("REDIS_BENCH_ROUNDS", 3).max(1);
    // [our producer, redis-benchmark, our consumer, the Python consumer]
    let mut sides: [Vec<Side>; 4] = Default::default();
    for round in 0..rounds {
        let server = RedisServer::start();
        let (p, c) = bench::in_turn(
            round,
            || {
                let o = our_producer(&server, "ours-p", count);
                (o, our_consumer(&server, "ours-c", count, None))
            },
            || {
                let r = reference_producer(&server, "ref-p", count);
                (r, reference_consumer(&server, "ref-c", count))
            },
        );
        let round_sides = [p.0, c.0, p.1, c.1];
        println!(
            "  round {round}: producer ours {:>7.0}/s {:>5.2} µs/msg, redis-benchmark {:>7.0}/s {:>5.2} µs/msg; \
             consumer ours {:>7.0}/s {:>5.2} µs/msg (server {:>5.2}), python {:>7.0}/s {:>5.2} µs/msg (server {:>5.2})",
            p.0.rate,
            p.0.client_us,
            c.0.rate,
            c.0.client_us,
            p.1.rate,
            p.1.client_us,
            p.1.server_us,
            c.1.rate,
            c.1.client_us,
            c.1.server_us,
        );
        for (i, s) in round_sides.into_iter().enumerate() {
            sides[i].push(s);
        }
    }
    let m: Vec<Side> = sides.iter().map(|s| Side::medians(s)).collect();
    let (p_ratio, c_ratio) = (
        bench::rate_ratio(&sides[0], &sides[1]),
        bench::rate_ratio(&sides[2], &sides[3]),
    );
    println!(
        "redis-server {count} messages × {SIZE} B, batch {BATCH}, medians of {rounds} rounds:"
    );
    for (what, reference, o, r, ratio) in [
        ("producer", "redis-benchmark", m[0], m[1], p_ratio),
        ("consumer", "python redis", m[2], m[3], c_ratio),
    ] {
        println!(
            "  {what}: ours {:.0} msgs/s, {:.2} µs CPU/msg (server {:.2}); {reference} {:.0} msgs/s, {:.2} µs CPU/msg (server {:.2}); ratio {ratio:.2}",
            o.rate, o.client_us, o.server_us, r.rate, r.client_us, r.server_us,
        );
    }
    v.check(
        p_ratio >= TARGET_PRODUCER_RATIO,
        format!("producer ≥ {TARGET_PRODUCER_RATIO} of redis-benchmark's rate: {p_ratio:.2}"),
    );
    v.check(
        m[0].client_us < TARGET_PRODUCER_US,
        format!("producer < {TARGET_PRODUCER_US} µs CPU/msg"),
    );
    v.check(
        c_ratio >= TARGET_CONSUMER_RATIO,
        format!("consumer ≥ {TARGET_CONSUMER_RATIO} of the Python reference's rate: {c_ratio:.2}"),
    );
    v.check(
        m[2].client_us < TARGET_CONSUMER_US,
        format!("consumer < {TARGET_CONSUMER_US} µs CPU/msg"),
    );
}
