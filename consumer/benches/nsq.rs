//! Benchmark of the NSQ backend with the real binaries: rate and CPU time per message of the producer and of
//! the consumer.
//!
//! Run with `cargo bench -p consumer --bench nsq`. It builds the release binaries, then:
//!
//! - With `NSQ_REAL_BIN=DIR` (a folder holding `nsqd`, `bench_writer` and `bench_reader` of nsq 1.3.0, built
//!   as `../shared/tools/nsq-build/README.md` says): starts that nsqd on free loopback ports (temp data dir,
//!   `--mem-queue-size 2000000`, so neither side measures nsqd's disk queue), and runs NSQ's own Go tools and
//!   ours side by side, `NSQ_BENCH_ROUNDS` rounds (default 3), the order alternating from round to round:
//!   1. publish, MPUB 100 × 200 B: `bench_writer -batch-size 100 -size 200 -runfor 2s` (one connection per
//!      core, one MPUB in flight on each) against `producer --count 1000000 --batch 100 --size 200
//!      --concurrency 2C` on `connections=C`, C = the number of cores (as the Go tool; two MPUBs in flight
//!      per connection, which our client pipelines and bench_writer does not); msgs/s once
//!      connected, as bench_writer counts (from the first batch nsqd confirmed to the summary line), CPU
//!      per message over the whole process (start-up included). Both topics have the channel `ch` (ours creates it), so
//!      nsqd does the same work for both.
//!   2. consume, zero work, 2500 in flight per connection: `bench_reader -runfor 1.5s` (RDY 2500 on each of
//!      its connections) against `consumer --count 600000 --work none --max-in-flight 2500×C --batch 2500` on
//!      `connections=C`, each from a backlog of 200-byte messages larger than it can drain; msgs/s from the
//!      first message received to the last ack (the Go tool times from its RDY to its close).
//!
//!   CPU per message is each process's user + system time (wait4) over the messages it handled. Prints every
//!   round, the medians and the ratios ours / Go tool's. Targets: rate ≥ 1.0× and CPU/msg ≤ 1.0× the Go
//!   tool's, medians.
//! - Otherwise, against the fake nsqd (it says so): 300,000 messages each way, CPU per message of the
//!   binaries (the fake runs in this process and is not counted), medians of three. There is no Go tool to
//!   compare with there, so the targets are absolute: producer < 1 µs/msg, consumer < 2.5 µs/msg (the Go
//!   tools' own figures against a real nsqd on this kind of machine were 0.59 and 1.49 µs/msg).
//!
//! Then, on whichever nsqd that is, the telemetry comparison (issue #14): our consumer (`--max-in-flight 200
//! --batch 200`) draining a backlog of `NSQ_TELEMETRY_COUNT` (default 300000) × 200 B with `--telemetry on`
//! (each ack batch's ledger records published to the topic `TOPIC-telemetry`, and confirmed, before its
//! FINs; heartbeats every second) against `--telemetry off`, alternating, median of `TELEMETRY_BENCH_ROUNDS`
//! (default 5); target ≥ 0.9× the rate. `BENCH_ONLY=telemetry` (or `-- telemetry`) runs only that.
//!
//! Prints one figure per line and exits 1 when a target is missed.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::bench::{self, Side, Verdicts};
use testkit::fake_nsqd::FakeNsqd;

const FAKE_MESSAGES: u64 = 300_000;
const FAKE_RUNS: usize = 3;
const PRODUCER_TARGET_US: f64 = 1.0;
const CONSUMER_TARGET_US: f64 = 2.5;

/// Runs a program to its end (RUST_LOG=warn, no QUEUE_URL from the shell): its CPU time (from wait4) and its
/// stdout + stderr (the Go tools print their figures on stderr).
fn run(bin: &Path, args: &[&str]) -> (Duration, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("QUEUE_URL")
        .env_remove("MW_TELEMETRY");
    let e = bench::run(cmd);
    (e.cpu, e.stdout + &e.stderr)
}

/// The binary's JSON summary line.
fn summary(text: &str) -> Value {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in {text}"))
}

/// One side's figures in one round.
#[derive(Clone, Copy)]
struct Fig {
    rate: f64,
    cpu_us: f64,
}

fn fig(msgs: f64, secs: f64, cpu: Duration) -> Fig {
    Fig {
        rate: msgs / secs,
        cpu_us: cpu.as_secs_f64() * 1e6 / msgs,
    }
}

fn main() {
    let bins = bench::build_release();
    let mut v = Verdicts::default();
    let only = bench::telemetry_only();
    match std::env::var_os("NSQ_REAL_BIN").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let go = Path::new(&dir);
            let nsqd = Nsqd::start(go);
            if !only {
                real(&bins, go, &nsqd, &mut v);
            }
            let pid = nsqd.child.id();
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let met = telemetry(
                "a real nsqd 1.3.0",
                &|topic| nsqd.url(topic, cores),
                &|| bench::proc_cpu(pid),
            );
            v.check(met, "consumer with telemetry ≥ 0.9× without");
            // exit() skips destructors: stop nsqd first.
            drop(nsqd);
        }
        None => {
            if !only {
                fake(&mut v);
            }
            let fake = FakeNsqd::start();
            // The fake runs on this process's threads (its main one waits meanwhile).
            let met = telemetry(
                "the fake nsqd (server = this process)",
                &|topic| fake.url(topic, "c"),
                &bench::own_cpu,
            );
            v.check(met, "consumer with telemetry ≥ 0.9× without");
        }
    }
    v.finish();
}

/// A real nsqd on free loopback ports, killed on drop.
struct Nsqd {
    child: std::process::Child,
    tcp: String,
    http: String,
    _data: tempfile::TempDir,
}

impl Drop for Nsqd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Nsqd {
    fn start(dir: &Path) -> Nsqd {
        let data = tempfile::tempdir().expect("temp dir");
        let (tcp, http) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let child = Command::new(dir.join("nsqd"))
            .args(["--tcp-address", &tcp, "--http-address", &http])
            .arg("--data-path")
            .arg(data.path())
            .args(["--mem-queue-size", "2000000", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}/nsqd: {e}", dir.display()));
        let nsqd = Nsqd {
            child,
            tcp,
            http,
            _data: data,
        };
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            nsqd.http_call("GET", "/ping").is_some()
        });
        assert!(up, "nsqd did not answer /ping");
        nsqd
    }

    /// One HTTP/1.0 call to nsqd; the body when it answered 200.
    fn http_call(&self, method: &str, path: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(&self.http).ok()?;
        write!(s, "{method} {path} HTTP/1.0\r\nHost: nsqd\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.contains(" 200 ").then(|| body.to_string())
    }

    fn url(&self, topic: &str, connections: usize) -> String {
        format!(
            "nsq://{}/{topic}/ch?http={}&connections={connections}",
            self.tcp, self.http
        )
    }

    fn delete(&self, topic: &str) {
        self.http_call("POST", &format!("/topic/delete?topic={topic}"));
    }
}

/// `duration: 2.000913s - 91.2mb/s - 478284.886ops/s - 2.091us/op`, the Go tools' last line: (messages,
/// seconds).
fn go_figures(text: &str) -> (f64, f64) {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("duration: "))
        .unwrap_or_else(|| panic!("no result line from the Go tool: {text}"));
    let after = &line[line.find("duration: ").unwrap_or(0) + 10..];
    let dur = after.split(' ').next().unwrap_or("");
    let secs = if let Some(ms) = dur.strip_suffix("ms") {
        ms.parse::<f64>().map(|v| v / 1e3)
    } else {
        dur.trim_end_matches('s').parse::<f64>()
    }
    .unwrap_or_else(|_| panic!("cannot read the duration in {line}"));
    let ops = line
        .split(" - ")
        .find_map(|p| p.strip_suffix("ops/s"))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot read ops/s in {line}"));
    (ops * secs, secs)
}

const REAL_PUBLISH: u64 = 1_000_000;
const REAL_CONSUME: u64 = 600_000;

fn real(bins: &Path, go: &Path, nsqd: &Nsqd, v: &mut Verdicts) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rounds: usize = std::env::var("NSQ_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(3);
    println!(
        "== NSQ against a real nsqd ({}), {rounds} alternating rounds, {cores} connections a side (one per core, as NSQ's Go tools) ==",
        go.join("nsqd").display()
    );
    let mut figs: [Vec<Fig>; 4] = Default::default();
    let c = cores.to_string();
    // Two MPUBs in flight per connection: our client pipelines them (bench_writer waits for each answer
    // before the next); measured by hand, 1.10-1.51 M msgs/s against 0.93-0.98 M with one per connection.
    let in_flight = (2 * cores).to_string();
    let p_count = REAL_PUBLISH.to_string();
    let c_count = REAL_CONSUME.to_string();
    let mif = (2500 * cores).to_string();
    for round in 0..rounds {
        // Publish: the Go tool first in even rounds, ours first in odd ones.
        let mut pair = [None, None];
        for side in [round % 2, 1 - round % 2] {
            let topic = format!("w{round}{side}");
            if side == 0 {
                // Our producer creates its topic's channel (so depth shows before a consumer comes), and nsqd
                // then copies every message into it: give bench_writer's topic the same channel, same work.
                nsqd.http_call("POST", &format!("/topic/create?topic={topic}"));
                nsqd.http_call("POST", &format!("/channel/create?topic={topic}&channel=ch"));
                let (cpu, text) = run(
                    &go.join("bench_writer"),
                    &[
                        "-nsqd-tcp-address",
                        &nsqd.tcp,
                        "-topic",
                        &topic,
                        "-runfor",
                        "2s",
                        "-size",
                        "200",
                        "-batch-size",
                        "100",
                    ],
                );
                let (msgs, secs) = go_figures(&text);
                pair[0] = Some(fig(msgs, secs, cpu));
            } else {
                let started = Instant::now();
                let (cpu, text) = run(
                    &bins.join("producer"),
                    &[
                        "--queue",
                        &nsqd.url(&topic, cores),
                        "--count",
                        &p_count,
                        "--rate",
                        "0",
                        "--batch",
                        "100",
                        "--size",
                        "200",
                        "--concurrency",
                        &in_flight,
                    ],
                );
                let s = summary(&text);
                assert_eq!(testkit::u(&s, "sent"), REAL_PUBLISH);
                // As bench_writer times it: once connected (from the first batch nsqd confirmed to the end;
                // that first batch is left out). CPU stays the whole process's, start-up included.
                let secs =
                    (testkit::u(&s, "ts_us") - testkit::u(&s, "first_sent_at_us")) as f64 / 1e6;
                assert!(secs <= started.elapsed().as_secs_f64());
                let msgs = (REAL_PUBLISH - 100) as f64;
                pair[1] = Some(Fig {
                    rate: msgs / secs,
                    cpu_us: cpu.as_secs_f64() * 1e6 / REAL_PUBLISH as f64,
                });
            }
            nsqd.delete(&topic);
        }
        let (gw, pw) = (pair[0].expect("go"), pair[1].expect("ours"));
        // Consume: fill both backlogs first (with our producer), then drain them in alternating order.
        let (gt, ot) = (format!("r{round}g"), format!("r{round}o"));
        for (topic, count) in [(&gt, "1500000"), (&ot, "700000")] {
            run(
                &bins.join("producer"),
                &[
                    "--queue",
                    &nsqd.url(topic, cores),
                    "--count",
                    count,
                    "--rate",
                    "0",
                    "--batch",
                    "100",
                    "--size",
                    "200",
                    "--concurrency",
                    &c,
                ],
            );
        }
        let mut pair = [None, None];
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let (cpu, text) = run(
                    &go.join("bench_reader"),
                    &[
                        "-nsqd-tcp-address",
                        &nsqd.tcp,
                        "-topic",
                        &gt,
                        "-channel",
                        "ch",
                        "-runfor",
                        "1.5s",
                        "-size",
                        "200",
                    ],
                );
                let (msgs, secs) = go_figures(&text);
                pair[0] = Some(fig(msgs, secs, cpu));
            } else {
                let (cpu, text) = run(
                    &bins.join("consumer"),
                    &[
                        "--queue",
                        &nsqd.url(&ot, cores),
                        "--count",
                        &c_count,
                        "--work",
                        "none",
                        "--max-in-flight",
                        &mif,
                        "--batch",
                        "2500",
                    ],
                );
                let s = summary(&text);
                assert_eq!(testkit::u(&s, "acked"), REAL_CONSUME, "{s}");
                let secs = (testkit::u(&s, "last_acked_at_us")
                    - testkit::u(&s, "first_received_at_us")) as f64
                    / 1e6;
                pair[1] = Some(fig(REAL_CONSUME as f64, secs, cpu));
            }
        }
        nsqd.delete(&gt);
        nsqd.delete(&ot);
        let (gr, cr) = (pair[0].expect("go"), pair[1].expect("ours"));
        println!(
            "round {round}: publish ours {:.0} msgs/s {:.2} µs/msg, bench_writer {:.0} msgs/s {:.2} µs/msg; consume ours {:.0} msgs/s {:.2} µs/msg, bench_reader {:.0} msgs/s {:.2} µs/msg",
            pw.rate, pw.cpu_us, gw.rate, gw.cpu_us, cr.rate, cr.cpu_us, gr.rate, gr.cpu_us
        );
        for (i, f) in [pw, gw, cr, gr].into_iter().enumerate() {
            figs[i].push(f);
        }
    }
    let med = |i: usize| Fig {
        rate: bench::median(figs[i].iter().map(|f| f.rate).collect()),
        cpu_us: bench::median(figs[i].iter().map(|f| f.cpu_us).collect()),
    };
    for (what, ours, theirs, tool) in [
        ("publish, MPUB 100 × 200 B", med(0), med(1), "bench_writer"),
        ("consume, zero work", med(2), med(3), "bench_reader"),
    ] {
        let (rr, cr) = (ours.rate / theirs.rate, ours.cpu_us / theirs.cpu_us);
        v.check(
            rr >= 1.0 && cr <= 1.0,
            format!(
                "{what} (medians): ours {:.0} msgs/s {:.2} µs/msg, {tool} {:.0} msgs/s {:.2} µs/msg: rate {rr:.2}× (target ≥ 1.0), CPU/msg {cr:.2}× (target ≤ 1.0)",
                ours.rate, ours.cpu_us, theirs.rate, theirs.cpu_us
            ),
        );
    }
}

fn fake(v: &mut Verdicts) {
    println!(
        "== NSQ against the FAKE nsqd (set NSQ_REAL_BIN=DIR holding nsqd, bench_writer and bench_reader to compare with NSQ's own tools on a real nsqd): CPU per message, absolute targets =="
    );
    let fake = FakeNsqd::start();
    let n = FAKE_MESSAGES;
    let (mut producer, mut consumer) = (Vec::new(), Vec::new());
    for r in 0..FAKE_RUNS {
        let topic = format!("bench{r}");
        let url = fake.url(&topic, "c");
        // The fake runs in this process: its CPU is not counted.
        let (out, p) = bench::measure(bench::producer(&url, n, 200, 100), n, || 0.0);
        out.expect_all("sent", n);
        assert_eq!(fake.channel_depth(&topic, "c").0, n);
        let (out, c) = bench::measure(bench::consumer(&url, n, 200, 200), n, || 0.0);
        out.expect_all("acked", n);
        println!(
            "run {r}: producer {:.2} µs/msg {:.0} msgs/s; consumer {:.2} µs/msg {:.0} msgs/s",
            p.client_us, p.rate, c.client_us, c.rate
        );
        producer.push(p);
        consumer.push(c);
    }
    for (what, m, target) in [
        (
            "producer CPU per message (MPUB 100 × 200 B)",
            Side::medians(&producer),
            PRODUCER_TARGET_US,
        ),
        (
            "consumer CPU per message (max-in-flight 200, zero work)",
            Side::medians(&consumer),
            CONSUMER_TARGET_US,
        ),
    ] {
        v.check(
            m.client_us < target,
            format!(
                "{what}: {:.2} µs (target < {target} µs), {:.0} msgs/s (the fake's rate, not nsqd's)",
                m.client_us, m.rate
            ),
        );
    }
}

/// The telemetry comparison on the fake or the real nsqd: `url(topic)` names a topic on it (channel `c`
/// or `ch`), `server_cpu` reads its CPU seconds.
fn telemetry(what: &str, url: &dyn Fn(&str) -> String, server_cpu: &dyn Fn() -> f64) -> bool {
    let n = bench::env_or("NSQ_TELEMETRY_COUNT", 300_000);
    let what = format!("{what}, {n} messages × 200 B, batch 200, max-in-flight 200");
    bench::telemetry(&what, bench::telemetry_rounds(), |round, on| {
        let topic = format!("tel{round}-{on}");
        let url_ = url(&topic);
        bench::run(bench::producer(&url_, n, 200, 100)).expect_all("sent", n);
        let cmd = bench::telemetry_consumer(&url_, n, 200, 200, on);
        let (out, side) = bench::measure(cmd, n, server_cpu);
        out.expect_all("acked", n);
        if on {
            let records = bench::depth(&url(&format!("{topic}-telemetry")));
            assert!(records.visible > 0, "telemetry on, yet no ledger records");
        }
        side
    })
}
