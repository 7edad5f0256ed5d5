//! Producer put rate against Azurite (`--inMemoryPersistence`, a fresh instance per run), with the
//! producer's CPU per message beside Azurite's CPU, at 1, 8 and 32 puts in flight.
//!
//! The producer's `--concurrency` is not wired yet, so in-flight puts come from `--batch N` (the backend
//! sends a batch's puts concurrently, up to 32). Targets: at 32 in flight, our CPU per message is under
//! 50 µs and Azurite's one Node thread is the busy side (its CPU time over 80 % of the wall time). Exits
//! non-zero on a missed target.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::azurite::{self, Azurite};

/// CPU seconds (user + system) a process has used so far, from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

struct Run {
    rate: f64,
    ours_us_per_msg: f64,
    azurite_busy: f64,
}

fn run(in_flight: usize, count: u64) -> Run {
    let az = Azurite::start_in_memory();
    let url = az.url("bench", "");
    let az_pid = az.pid().expect("azurite pid");
    let az_cpu0 = proc_cpu(az_pid);
    let mut cmd = Command::new(testkit::bin("producer"));
    cmd.args([
        "--queue",
        &url,
        "--rate",
        "0",
        "--count",
        &count.to_string(),
    ])
    .args(["--batch", &in_flight.to_string(), "--stats-interval", "10s"])
    .env("RUST_LOG", "error")
    .stdout(std::process::Stdio::null());
    azurite::with_key(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start producer");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    // wait4 reaped it already (for its rusage); this only tells std so.
    let _ = child.wait();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "producer failed"
    );
    let ours = usage.ru_utime.tv_sec as f64
        + usage.ru_utime.tv_usec as f64 / 1e6
        + usage.ru_stime.tv_sec as f64
        + usage.ru_stime.tv_usec as f64 / 1e6;
    let az_cpu = proc_cpu(az_pid) - az_cpu0;
    Run {
        rate: count as f64 / wall,
        ours_us_per_msg: ours * 1e6 / count as f64,
        azurite_busy: az_cpu / wall,
    }
}

fn main() {
    let count: u64 = std::env::var("AZURE_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let mut failed = false;
    println!("in_flight  msgs/s  our_cpu_us/msg  azurite_cpu_%");
    for in_flight in [1, 8, 32] {
        let r = run(in_flight, count);
        println!(
            "{in_flight:>9}  {:>6.0}  {:>14.1}  {:>13.0}",
            r.rate,
            r.ours_us_per_msg,
            r.azurite_busy * 100.0
        );
        if in_flight == 32 {
            if r.ours_us_per_msg >= 50.0 {
                eprintln!(
                    "MISSED: {:.1} µs of our CPU per message (target < 50)",
                    r.ours_us_per_msg
                );
                failed = true;
            }
            if r.azurite_busy < 0.8 {
                eprintln!(
                    "MISSED: Azurite only {:.0} % busy: the client is the limit",
                    r.azurite_busy * 100.0
                );
                failed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if failed {
        std::process::exit(1);
    }
}
