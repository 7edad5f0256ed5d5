//! Benchmark for the remainder's acceptance criteria (a measurement, not a timed test):
//!
//! 1. With the remainder running at full tilt beside 2 consumers doing `cpu:` work, the consumers' throughput is
//!    at least 95% of their throughput without it.
//! 2. Alone, the remainder uses at least 90% of the idle CPU.
//!
//! The consumers are 2 real `consumer` processes (`--work cpu:5ms --max-in-flight 1`) on an embedded queue
//! filled beforehand, and their throughput is read from their own stats lines. The remainder is the real release
//! binary, started with its defaults (one worker per available CPU).
//!
//! Run with `cargo bench -p remainder --bench interference`. Prints one figure per line and exits 1 when a
//! target is missed. The figures only mean something on an otherwise quiet machine, so the bench measures the
//! CPU other processes use meanwhile (from /proc/stat), repeats a round in which they used more than 5%, and
//! says so when no round was quiet.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::Proc;

/// How long each phase measures.
const PHASE: Duration = Duration::from_secs(3);
/// The consumers' work per message.
const CONSUMER_WORK: &str = "cpu:5ms";
const CONSUMERS: usize = 2;
/// Messages put on the queue before a round: more than two phases of two consumers can take.
const FILL: u64 = 20_000;
/// Target 1: consumers' throughput beside the remainder over their throughput without it.
const MIN_RATIO: f64 = 0.95;
/// Target 2: the remainder's CPU use alone, as a share of all the CPU this process may use.
const MIN_ALONE_SHARE: f64 = 0.90;
/// Other processes' CPU use (share of the machine, in any phase) above which a round is not quiet.
const QUIET: f64 = 0.05;

/// Rounds to try before judging a noisy one: other processes (a build, another benchmark) make a round say more
/// about them than about the remainder.
const MAX_ROUNDS: usize = 3;

fn main() -> ExitCode {
    match bench() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs rounds until one is quiet (at most [`MAX_ROUNDS`]), prints the quietest one's figures, and returns
/// whether it met every target.
fn bench() -> Result<bool, String> {
    build_binaries()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut best: Option<Round> = None;
    for attempt in 1..=MAX_ROUNDS {
        let round = Round::run(cpus)?;
        let noise = round.others_max();
        let quiet = noise.is_some_and(|n| n <= QUIET);
        if !quiet && attempt < MAX_ROUNDS {
            println!(
                "round {attempt} discarded: other processes used {} of the CPU in one phase (limit {:.0}%)",
                noise.map_or("an unknown share".into(), |n| format!("{:.1}%", n * 100.0)),
                QUIET * 100.0
            );
        }
        if best
            .as_ref()
            .is_none_or(|b| noise.unwrap_or(1.0) < b.others_max().unwrap_or(1.0))
        {
            best = Some(round);
        }
        if quiet {
            break;
        }
    }
    let round = best.ok_or("no round ran")?;
    Ok(round.report(cpus))
}

/// One measurement: the consumers alone, then the remainder alone, then both together.
struct Round {
    /// The consumers' acks per second without and with the remainder.
    without: f64,
    with: f64,
    phase_without: Phase,
    alone: Phase,
    beside: Phase,
    /// The remainder's summary line.
    summary: Value,
}

impl Round {
    fn run(cpus: usize) -> Result<Round, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let queue = fill_queue(dir.path())?;

        // Phase 1: the consumers alone, on a machine with no remainder.
        let before = Snapshot::take(None)?;
        let (without, consumers_cpu) = run_consumers(&queue, PHASE)?;
        let phase_without = Phase::between(&before, &Snapshot::take(None)?, cpus, consumers_cpu);

        // The remainder at full tilt: its defaults, one worker per CPU.
        let mut cmd = testkit::command("remainder");
        cmd.env_remove("REMAINDER_THREADS")
            .env_remove("STATS_INTERVAL")
            .args(["--stats-interval", "100ms"]);
        let mut remainder = Proc::spawn("remainder", cmd);
        remainder.wait_for_line(Duration::from_secs(10), |v| {
            v["kind"] == "interval" && v["units"].as_u64().is_some_and(|n| n > 0)
        });

        // Phase 2: the remainder alone.
        let before = Snapshot::take(Some(&remainder))?;
        std::thread::sleep(PHASE);
        let alone = Phase::between(
            &before,
            &Snapshot::take(Some(&remainder))?,
            cpus,
            Duration::ZERO,
        );

        // Phase 3: the consumers beside the remainder.
        let before = Snapshot::take(Some(&remainder))?;
        let (with, consumers_cpu) = run_consumers(&queue, PHASE)?;
        let beside = Phase::between(
            &before,
            &Snapshot::take(Some(&remainder))?,
            cpus,
            consumers_cpu,
        );

        remainder.signal(libc::SIGTERM);
        let status = remainder.wait(Duration::from_secs(5));
        if !status.success() {
            return Err(format!(
                "the remainder exited with {status}; stderr:\n{}",
                remainder.stderr()
            ));
        }
        Ok(Round {
            without,
            with,
            phase_without,
            alone,
            beside,
            summary: remainder.summary().unwrap_or(Value::Null),
        })
    }

    /// The largest share of the CPU other processes used in any phase, when /proc/stat can tell.
    fn others_max(&self) -> Option<f64> {
        let [a, b, c] = [
            self.phase_without.others_share?,
            self.alone.others_share?,
            self.beside.others_share?,
        ];
        Some(a.max(b).max(c))
    }

    /// Prints the figures, one per line; returns whether every target was met.
    fn report(&self, cpus: usize) -> bool {
        let ratio = if self.without > 0.0 {
            self.with / self.without
        } else {
            0.0
        };
        println!("cpus available: {cpus}");
        println!(
            "remainder priority: {}",
            self.summary["priority"].as_str().unwrap_or("unknown")
        );
        println!(
            "remainder unit: {} us of CPU",
            self.summary["unit_us"].as_u64().unwrap_or(0)
        );
        println!(
            "remainder alone: CPU used / (wall x cpus) {:.1}% (target >= {:.0}%)",
            self.alone.remainder_share * 100.0,
            MIN_ALONE_SHARE * 100.0
        );
        if let Some(share) = self.alone.idle_taken {
            println!(
                "remainder alone: share of the otherwise idle CPU it took {:.1}%",
                share * 100.0
            );
        }
        println!(
            "remainder alone: units/s {:.1}",
            self.alone.remainder_units_per_s
        );
        println!("consumers without remainder: msgs/s {:.1}", self.without);
        println!("consumers with remainder: msgs/s {:.1}", self.with);
        println!("consumers with/without ratio: {ratio:.3} (target >= {MIN_RATIO:.2})");
        println!(
            "remainder beside consumers: units/s {:.1}",
            self.beside.remainder_units_per_s
        );
        println!(
            "remainder beside consumers: CPU used / (wall x cpus) {:.1}%",
            self.beside.remainder_share * 100.0
        );
        let others = [
            self.phase_without.others_share,
            self.alone.others_share,
            self.beside.others_share,
        ];
        if let [Some(a), Some(b), Some(c)] = others {
            println!(
                "other processes' CPU use (without / alone / beside): {:.1}% / {:.1}% / {:.1}%",
                a * 100.0,
                b * 100.0,
                c * 100.0
            );
        }
        if self.others_max().is_none_or(|n| n > QUIET) {
            println!(
                "WARNING: no quiet round in {MAX_ROUNDS}: other processes used more than {:.0}% of the CPU (or \
                 /proc/stat could not tell), so a missed target may be their doing rather than the remainder's",
                QUIET * 100.0
            );
        }

        let mut ok = true;
        if self.alone.remainder_share < MIN_ALONE_SHARE {
            println!(
                "MISSED: the remainder alone used less than {:.0}% of the CPU",
                MIN_ALONE_SHARE * 100.0
            );
            ok = false;
        }
        if ratio < MIN_RATIO {
            println!(
                "MISSED: the consumers kept less than {:.0}% of their throughput beside the remainder",
                MIN_RATIO * 100.0
            );
            ok = false;
        }
        println!("result: {}", if ok { "PASS" } else { "FAIL" });
        ok
    }
}

/// Builds the release binaries this bench runs (a no-op when they are fresh), so that it measures the current
/// code. `cargo bench` sets `CARGO` to the cargo that runs it; the target dir is inherited through the
/// environment.
fn build_binaries() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "remainder",
            "-p",
            "consumer",
            "-p",
            "producer",
        ])
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("{cargo} build --release failed ({status})"));
    }
    // testkit finds binaries in the parent of this bench's directory: target/release/deps/.. = target/release.
    for name in ["remainder", "consumer", "producer"] {
        let path = testkit::bin_dir().join(name);
        if !path.exists() {
            return Err(format!(
                "built the binaries, but {} is missing",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Puts [`FILL`] messages on a new embedded queue in `dir` with the real producer; returns the queue URL.
fn fill_queue(dir: &Path) -> Result<String, String> {
    let url = testkit::sqlite_url(dir);
    let mut cmd = testkit::command("producer");
    cmd.args(["--queue", &url, "--rate", "0", "--count", &FILL.to_string()]);
    let mut producer = Proc::spawn("producer", cmd);
    if !producer.wait(Duration::from_secs(60)).success() {
        return Err(format!("filling the queue failed:\n{}", producer.stderr()));
    }
    Ok(url)
}

/// The latest interval line's `acked` and `ts_us` of a consumer.
fn acked_at(p: &Proc) -> Option<(u64, u64)> {
    let line = p.stats().into_iter().rfind(|v| v["kind"] == "interval")?;
    Some((line["acked"].as_u64()?, line["ts_us"].as_u64()?))
}

/// Runs the consumers for `phase` after they have warmed up; returns their combined acks per second, from
/// their own interval lines, and the CPU time they used.
fn run_consumers(queue: &str, phase: Duration) -> Result<(f64, Duration), String> {
    let mut consumers: Vec<Proc> = (0..CONSUMERS)
        .map(|i| {
            let mut cmd = testkit::command("consumer");
            cmd.args([
                "--queue",
                queue,
                "--work",
                CONSUMER_WORK,
                "--max-in-flight",
                "1",
                "--batch",
                "1",
            ])
            .args(["--stats-interval", "100ms"]);
            Proc::spawn(&format!("consumer {i}"), cmd)
        })
        .collect();
    for c in &consumers {
        c.wait_for_line(Duration::from_secs(10), |v| {
            v["kind"] == "interval" && v["acked"].as_u64().is_some_and(|n| n > 0)
        });
    }
    let start: Vec<Option<(u64, u64)>> = consumers.iter().map(acked_at).collect();
    let cpu_start: Duration = consumers
        .iter()
        .map(|c| process_cpu(c.pid()))
        .sum::<Result<_, _>>()?;
    std::thread::sleep(phase);
    let end: Vec<Option<(u64, u64)>> = consumers.iter().map(acked_at).collect();
    let cpu_end: Duration = consumers
        .iter()
        .map(|c| process_cpu(c.pid()))
        .sum::<Result<_, _>>()?;
    for c in &consumers {
        c.signal(libc::SIGTERM);
    }
    for c in &mut consumers {
        let status = c.wait(Duration::from_secs(10));
        if !status.success() {
            return Err(format!("{} exited with {status}:\n{}", c.name, c.stderr()));
        }
    }
    let mut rate = 0.0;
    for (s, e) in start.into_iter().zip(end) {
        let ((acked0, ts0), (acked1, ts1)) = s.zip(e).ok_or("a consumer wrote no interval line")?;
        let secs = ts1.saturating_sub(ts0) as f64 / 1e6;
        if secs <= 0.0 {
            return Err("a consumer's interval lines did not advance".into());
        }
        rate += acked1.saturating_sub(acked0) as f64 / secs;
    }
    Ok((rate, cpu_end.saturating_sub(cpu_start)))
}

/// CPU accounting at one instant.
struct Snapshot {
    at: Instant,
    /// This bench's own CPU time.
    own_cpu: Duration,
    /// The remainder's CPU time (all threads), and `units` and `ts_us` of its latest interval line.
    remainder: Option<(Duration, u64, u64)>,
    machine: Option<MachineCpu>,
}

impl Snapshot {
    fn take(remainder: Option<&Proc>) -> Result<Snapshot, String> {
        let remainder = match remainder {
            None => None,
            Some(p) => {
                let line = p
                    .stats()
                    .into_iter()
                    .rfind(|v| v["kind"] == "interval")
                    .ok_or("the remainder wrote no interval line")?;
                Some((
                    process_cpu(p.pid())?,
                    line["units"].as_u64().unwrap_or(0),
                    line["ts_us"].as_u64().unwrap_or(0),
                ))
            }
        };
        Ok(Snapshot {
            at: Instant::now(),
            own_cpu: process_cpu(std::process::id() as i32)?,
            remainder,
            machine: machine_cpu(),
        })
    }
}

/// What happened between two snapshots.
struct Phase {
    /// The remainder's CPU use / (wall × cpus).
    remainder_share: f64,
    /// The remainder's CPU use / (its CPU use + CPU left idle): how much of the CPU nobody else used it took.
    idle_taken: Option<f64>,
    /// CPU used by every process other than the remainder and this bench / (wall × cpus). The figures are only
    /// meaningful when this is near 0.
    others_share: Option<f64>,
    /// From the remainder's own interval lines.
    remainder_units_per_s: f64,
}

impl Phase {
    /// `consumers_cpu` is what the consumer processes used meanwhile: ours, not "other processes".
    fn between(before: &Snapshot, after: &Snapshot, cpus: usize, consumers_cpu: Duration) -> Phase {
        let capacity = after.at.duration_since(before.at).as_secs_f64() * cpus as f64;
        let own = (after.own_cpu.saturating_sub(before.own_cpu) + consumers_cpu).as_secs_f64();
        let (used, units_per_s) = match (before.remainder, after.remainder) {
            (Some((cpu0, units0, ts0)), Some((cpu1, units1, ts1))) => {
                let line_secs = ts1.saturating_sub(ts0) as f64 / 1e6;
                let units = units1.saturating_sub(units0) as f64;
                (
                    cpu1.saturating_sub(cpu0).as_secs_f64(),
                    if line_secs > 0.0 {
                        units / line_secs
                    } else {
                        0.0
                    },
                )
            }
            _ => (0.0, 0.0),
        };
        // /proc/stat describes the whole machine; it only speaks for this process's CPUs when they are the same.
        let machine = match (before.machine, after.machine) {
            (Some(m0), Some(m1)) if m0.cpus == cpus => Some((
                m1.idle.saturating_sub(m0.idle).as_secs_f64(),
                m1.busy.saturating_sub(m0.busy).as_secs_f64(),
            )),
            _ => None,
        };
        Phase {
            remainder_share: used / capacity,
            idle_taken: machine.map(|(idle, _)| {
                if used + idle > 0.0 {
                    used / (used + idle)
                } else {
                    0.0
                }
            }),
            others_share: machine.map(|(_, busy)| (busy - used - own).max(0.0) / capacity),
            remainder_units_per_s: units_per_s,
        }
    }
}

/// A process's CPU time (user + system, all threads) from /proc/<pid>/stat.
fn process_cpu(pid: i32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces; utime and stime are fields 14 and 15,
    // so 11 and 12 after it.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("unexpected /proc/<pid>/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime) = ticks(11)
        .zip(ticks(12))
        .ok_or("unexpected /proc/<pid>/stat format")?;
    Ok(ticks_to_duration(utime + stime))
}

/// The machine's CPU time summed over its CPUs, from the first line of /proc/stat.
#[derive(Clone, Copy)]
struct MachineCpu {
    /// idle + iowait.
    idle: Duration,
    /// user + nice + system + irq + softirq (guest time is already inside user and nice).
    busy: Duration,
    /// How many CPUs /proc/stat lists.
    cpus: usize,
}

fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let total: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let cpus = lines
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    let field = |i: usize| total.get(i).copied();
    Some(MachineCpu {
        idle: ticks_to_duration(field(3)? + field(4)?),
        busy: ticks_to_duration(field(0)? + field(1)? + field(2)? + field(5)? + field(6)?),
        cpus,
    })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads its argument.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_s)
}
