//! Producer put rate against Azurite (`--inMemoryPersistence`), beside a bare HTTP load tool (`wrk`) on the
//! same Azurite, at 1, 8 and 32 puts in flight (`--concurrency N --batch 1`: one PUT per message).
//!
//! Each round starts a fresh Azurite, warms it up (Node's JIT makes a cold Azurite half as fast for its first
//! seconds), then runs our producer and wrk, each on its own empty queue, in alternating order from round to
//! round. wrk POSTs the same 100-byte message text with a SAS URL, so it measures what Azurite can take. The
//! figures printed are medians over the rounds:
//! - msgs/s for ours and wrk, and their ratio;
//! - our CPU per message (the producer's user + system time, start-up included, from `wait4`);
//! - Azurite's CPU per message while serving ours, and how busy its main thread was.
//!
//! Targets, checked at 8 and 32 in flight (at 1, both sides wait on round trips): our CPU under 50 µs per
//! message, and at least 90 % of wrk's rate; at 32, Azurite busy over 80 % of the wall time (it, not we, is
//! the limit). Exits non-zero on a missed target. When wrk cannot be found or fetched, the comparison is
//! skipped with a message and only our figures are checked.
//!
//! Then the telemetry comparison (issue #14), each run on a fresh Azurite warmed by a drain of 1,000: our consumer (`--batch 32
//! --max-in-flight 64`: one receive of 32, the service's most) draining a backlog of
//! `AZURE_TELEMETRY_COUNT` (default 3000) with `--telemetry on` (each ack batch's ledger records put to the
//! queue `QUEUE-telemetry` before its deletes; heartbeats every second) against `--telemetry off`,
//! alternating, median of `TELEMETRY_BENCH_ROUNDS` (default 5); target ≥ 0.9× the rate.
//! Azurite's receives and deletes cost in proportion to every message it holds, in any queue (the service's
//! do not), and one that served a few runs became many times slower: hence a fresh one per run. Within an "on" run the records it puts (one per ack batch, ~3 % of the
//! backlog) weigh on Azurite alike: an Azurite cost, counted against telemetry here.
//! `BENCH_ONLY=telemetry` (or `-- telemetry`) runs only that.
//!
//! Environment: `AZURE_BENCH_COUNT` (messages per run, default 8000), `AZURE_BENCH_ROUNDS` (default 3),
//! `AZURE_BENCH_RATE` (the producer's `--rate`, default 0: as fast as Azurite takes them), `WRK` (path of a
//! wrk binary). Without `WRK` or a `wrk` on the PATH, the bench fetches Debian's `wrk`
//! (and its LuaJIT) with `apt-get download` into the target directory and unpacks them with `dpkg -x`; no
//! root is needed. The machine should be otherwise idle: on 2 cores, a compile next to it halves the rates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use queues::azure::{DEFAULT_API_VERSION, Secret, account_sas};
use testkit::azurite::{self, ACCOUNT, Azurite, KEY};
use testkit::bench::{self, Verdicts, median};

/// Bytes of message text, for ours (`--size`) and wrk alike.
const SIZE: usize = 100;
const TARGET_US_PER_MSG: f64 = 50.0;
const TARGET_RATIO: f64 = 0.9;
const TARGET_AZURITE_BUSY: f64 = 0.8;

/// One side's figures in one round.
#[derive(Clone, Copy, Default)]
struct Side {
    rate: f64,
    /// The client's CPU µs per message.
    client_us: f64,
    /// Azurite's CPU µs per message.
    azurite_us: f64,
    /// Azurite's CPU time over the wall time.
    azurite_busy: f64,
}

fn producer(az: &Azurite, queue: &str, in_flight: usize, count: u64) -> Side {
    let rate = std::env::var("AZURE_BENCH_RATE").unwrap_or_else(|_| "0".into());
    let mut cmd = Command::new(testkit::bin("producer"));
    cmd.args(["--queue", &az.url(queue, ""), "--rate", &rate])
        .args(["--count", &count.to_string(), "--size", &SIZE.to_string()])
        .args(["--concurrency", &in_flight.to_string(), "--batch", "1"])
        .args(["--stats-interval", "1h"])
        .env("RUST_LOG", "error")
        .env_remove("MW_TELEMETRY");
    azurite::with_key(&mut cmd);
    let pid = az.pid().expect("azurite pid");
    let (out, side) = bench::measure(cmd, count, || bench::proc_cpu(pid));
    out.expect_all("sent", count);
    Side {
        rate: side.rate,
        client_us: side.client_us,
        azurite_us: side.server_us,
        // CPU seconds per message × messages per second.
        azurite_busy: side.server_us * side.rate / 1e6,
    }
}

/// Our consumer draining a backlog of `count` (put by our producer, 32 in flight) with telemetry on or off.
fn consumer(az: &Azurite, queue: &str, count: u64, telemetry: bool) -> bench::Side {
    producer(az, queue, 32, count);
    let url = az.url(queue, "");
    let mut cmd = bench::telemetry_consumer(&url, count, 32, 64, telemetry);
    // A lease longer than Azurite's worst stall: a delete that hung past a 30 s lease on a loaded machine
    // (seen: 31 s) cannot be told from one that lost its lease, so it counted as lease_lost and `--count`
    // never came (the message had gone). Within the lease, a retried delete counts as acked.
    cmd.args(["--lease", "5m"]);
    azurite::with_key(&mut cmd);
    let pid = az.pid().expect("azurite pid");
    let (out, side) = bench::measure(cmd, count, || bench::proc_cpu(pid));
    // A 503 from Azurite (it answers "server busy" now and then) is retried and counted as throttled: not a
    // failure of the consumer's, so only errors other than throttles fail the round.
    let s = out.summary();
    assert_eq!(s["acked"].as_u64(), Some(count), "{s}");
    assert_eq!(
        s["errors"], s["throttled"],
        "errors other than throttles: {s}"
    );
    assert_eq!(azurite::depth(&url).total(), 0, "drained");
    if telemetry {
        let records = azurite::depth(&az.url(&format!("{queue}-telemetry"), ""));
        assert!(records.visible > 0, "telemetry on, yet no ledger records");
    }
    side
}

/// A Lua script that makes wrk POST one message of [`SIZE`] bytes of text, as the SDK serializes it.
fn wrk_script(dir: &Path) -> PathBuf {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessage><MessageText>{}</MessageText></QueueMessage>",
        ".".repeat(SIZE)
    );
    let script = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"x-ms-version\"] = \"{DEFAULT_API_VERSION}\"\n\
         wrk.headers[\"content-type\"] = \"application/xml\"\nwrk.body = '{body}'\n"
    );
    let path = dir.join("put.lua");
    std::fs::write(&path, script).expect("write the wrk script");
    path
}

fn wrk(wrk: &Wrk, az: &Azurite, queue: &str, in_flight: usize, seconds: u64) -> Side {
    // Creates the queue (with the key; wrk only puts).
    azurite::depth(&az.url(queue, ""));
    let sas = account_sas(ACCOUNT, &Secret::new(KEY), Duration::from_secs(3600))
        .expect("a SAS from the documented key");
    let url = format!("{}/{queue}/messages?{}", az.endpoint(), sas.expose());
    let mut cmd = wrk.command();
    cmd.args(["-t1", "--timeout", "10s"])
        .arg(format!("-c{in_flight}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(&wrk.script)
        .arg(url);
    let pid = az.pid().expect("azurite pid");
    let az0 = bench::proc_cpu(pid);
    let run = bench::run(cmd);
    let az_cpu = bench::proc_cpu(pid) - az0;
    let (out, cpu) = (run.stdout, run.cpu.as_secs_f64());
    assert!(
        !out.contains("Non-2xx"),
        "wrk got error answers from Azurite:\n{out}"
    );
    // "  12345 requests in 3.00s, 8.37MB read"
    let (n, secs) = out
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let n: f64 = w.next()?.parse().ok()?;
            (w.next()? == "requests" && w.next()? == "in").then_some(())?;
            let secs: f64 = w
                .next()?
                .trim_end_matches(',')
                .strip_suffix('s')?
                .parse()
                .ok()?;
            Some((n, secs))
        })
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"));
    Side {
        rate: n / secs,
        client_us: cpu * 1e6 / n,
        azurite_us: az_cpu * 1e6 / n,
        azurite_busy: az_cpu / secs,
    }
}

/// A usable wrk binary (with the library path its unpacked LuaJIT needs) and the script it runs.
struct Wrk {
    bin: PathBuf,
    lib_dir: Option<PathBuf>,
    script: PathBuf,
}

impl Wrk {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        if let Some(dir) = &self.lib_dir {
            cmd.env("LD_LIBRARY_PATH", dir);
        }
        cmd
    }

    /// `$WRK`, a `wrk` on the PATH, or Debian's wrk fetched into the target directory; `Err` says why none.
    fn find(script_dir: &Path) -> Result<Wrk, String> {
        let script = wrk_script(script_dir);
        let works = |bin: &Path, lib: Option<&Path>| {
            let mut cmd = Command::new(bin);
            if let Some(l) = lib {
                cmd.env("LD_LIBRARY_PATH", l);
            }
            // wrk -v prints its version and exits 1; it ran if it printed it.
            cmd.arg("-v")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wrk"))
        };
        if let Some(bin) = std::env::var_os("WRK").map(PathBuf::from) {
            return if works(&bin, None) {
                Ok(Wrk {
                    bin,
                    lib_dir: None,
                    script,
                })
            } else {
                Err(format!("WRK={} does not run", bin.display()))
            };
        }
        if works(Path::new("wrk"), None) {
            return Ok(Wrk {
                bin: "wrk".into(),
                lib_dir: None,
                script,
            });
        }
        // target/release/.. is the target directory.
        let root = testkit::bin_dir()
            .parent()
            .map(|t| t.join("wrk"))
            .ok_or("no target directory")?;
        let bin = root.join("usr/bin/wrk");
        let lib = root.join("usr/lib/x86_64-linux-gnu");
        if !bin.exists() {
            fetch_debian_wrk(&root)?;
        }
        if works(&bin, Some(&lib)) {
            Ok(Wrk {
                bin,
                lib_dir: Some(lib),
                script,
            })
        } else {
            Err(format!("{} does not run", bin.display()))
        }
    }
}

/// `apt-get download` wrk and LuaJIT into `root/debs`, then `dpkg -x` them into `root`.
fn fetch_debian_wrk(root: &Path) -> Result<(), String> {
    let debs = root.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    println!("fetching Debian's wrk into {} …", root.display());
    for pkg in [&["wrk"][..], &["libluajit2-5.1-2", "libluajit-5.1-2"][..]] {
        let got = pkg.iter().any(|p| {
            Command::new("apt-get")
                .args(["download", p])
                .current_dir(&debs)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !got {
            return Err(format!("`apt-get download {}` failed", pkg.join(" or ")));
        }
    }
    let entries = std::fs::read_dir(&debs).map_err(|e| e.to_string())?;
    for deb in entries.flatten().map(|e| e.path()) {
        if deb.extension().is_some_and(|x| x == "deb") {
            let ok = Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(root)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("`dpkg -x {}` failed", deb.display()));
            }
        }
    }
    Ok(())
}

fn main() {
    let mut v = Verdicts::default();
    if !bench::telemetry_only() {
        against_wrk(&mut v);
    }
    let n = bench::env_or("AZURE_TELEMETRY_COUNT", 3_000);
    let what = format!(
        "a fresh in-memory Azurite each run, {n} messages × {SIZE} B, batch 32, max-in-flight 64"
    );
    let met = bench::telemetry(&what, bench::telemetry_rounds(), |round, on| {
        // A fresh Azurite for each run: one that served a few runs became many times slower, and once sat
        // at 100 % CPU for minutes on a drained queue (its in-memory store grows with what it has seen).
        let az = Azurite::start_in_memory();
        // Warms up its receive and delete paths too, and leaves it empty.
        consumer(&az, "warmup", 1_000, false);
        consumer(&az, &format!("tel{round}-{on}"), n, on)
    });
    v.check(met, "consumer with telemetry ≥ 0.9× without");
    v.finish();
}

fn against_wrk(v: &mut Verdicts) {
    let count: u64 = bench::env_or("AZURE_BENCH_COUNT", 8_000);
    let rounds: usize = bench::env_or("AZURE_BENCH_ROUNDS", 3).max(1);
    let scratch = tempfile::tempdir().expect("temp dir");
    let wrk_tool = match Wrk::find(scratch.path()) {
        Ok(w) => Some(w),
        Err(why) => {
            println!("wrk comparison SKIPPED: {why} (set WRK=/path/to/wrk, or install wrk)");
            None
        }
    };
    let mut table = Vec::new();
    for in_flight in [1, 8, 32] {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for round in 0..rounds {
            let az = Azurite::start_in_memory();
            // Warm-up: 3,000 of our puts on a queue of their own.
            producer(&az, "warmup", 8, 3_000);
            let run_ours =
                |ours: &mut Vec<Side>| ours.push(producer(&az, "ours", in_flight, count));
            // wrk runs about as long as ours did (at least 2 s).
            let run_wrk = |theirs: &mut Vec<Side>, secs: u64| {
                if let Some(w) = &wrk_tool {
                    theirs.push(wrk(w, &az, "wrk", in_flight, secs));
                }
            };
            let secs = |rate: f64| ((count as f64 / rate).ceil() as u64).max(2);
            if round % 2 == 0 {
                run_ours(&mut ours);
                run_wrk(&mut theirs, secs(ours[ours.len() - 1].rate));
            } else {
                run_wrk(&mut theirs, secs(ours.last().map_or(1000.0, |s| s.rate)));
                run_ours(&mut ours);
            }
            let o = ours[ours.len() - 1];
            let t = theirs.last().copied();
            println!(
                "  round {round} in_flight {in_flight:>2}: ours {:>5.0}/s {:>5.1} µs/msg (Azurite {:>3.0} µs/msg, {:>3.0} % busy){}",
                o.rate,
                o.client_us,
                o.azurite_us,
                o.azurite_busy * 100.0,
                t.map_or(String::new(), |t| format!(
                    "; wrk {:>5.0}/s {:>5.1} µs/msg (Azurite {:>3.0} µs/msg)",
                    t.rate, t.client_us, t.azurite_us
                ))
            );
        }
        let m = |v: &[Side], f: fn(&Side) -> f64| median(v.iter().map(f).collect());
        let ratios: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .map(|(o, t)| o.rate / t.rate)
            .collect();
        table.push((
            in_flight,
            m(&ours, |s| s.rate),
            m(&theirs, |s| s.rate),
            median(ratios),
            m(&ours, |s| s.client_us),
            m(&theirs, |s| s.client_us),
            m(&ours, |s| s.azurite_us),
            m(&ours, |s| s.azurite_busy),
        ));
    }
    println!(
        "\nmedians of {rounds} rounds, {count} messages of {SIZE} B per run of ours:\n\
         in_flight  ours_msgs/s  wrk_msgs/s  ratio  our_cpu_us/msg  wrk_cpu_us/msg  azurite_cpu_us/msg  azurite_busy_%"
    );
    for &(in_flight, rate, wrk_rate, ratio, us, wrk_us, az_us, busy) in &table {
        println!(
            "{in_flight:>9}  {rate:>11.0}  {wrk_rate:>10.0}  {ratio:>5.2}  {us:>14.1}  {wrk_us:>14.1}  {az_us:>18.0}  {:>14.0}",
            busy * 100.0
        );
        if in_flight < 8 {
            continue;
        }
        v.check(
            us < TARGET_US_PER_MSG,
            format!("{in_flight} in flight: {us:.1} µs of our CPU per message (target < {TARGET_US_PER_MSG})"),
        );
        if wrk_tool.is_some() {
            v.check(
                ratio >= TARGET_RATIO,
                format!(
                    "{in_flight} in flight: {:.0} % of wrk's put rate (target ≥ {:.0} %)",
                    ratio * 100.0,
                    TARGET_RATIO * 100.0
                ),
            );
        }
        if in_flight == 32 {
            v.check(
                busy >= TARGET_AZURITE_BUSY,
                format!(
                    "32 in flight: Azurite {:.0} % busy (target ≥ {:.0} %: it, not we, is the limit)",
                    busy * 100.0,
                    TARGET_AZURITE_BUSY * 100.0
                ),
            );
        }
    }
}
