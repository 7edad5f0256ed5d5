//! SIGTERM with stdout and stderr on pipes whose reader went away (a log shipper restarted): every long-running
//! binary must still stop gracefully, exit 0 within its drain time, never panic, and lose nothing. The real
//! binaries are started; build them first (`cargo build --workspace --bins`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{command, depth, ledger_entries, sqlite_url, tally};

/// A child whose pipes the test closes; killed when dropped so a failing assertion leaves nothing behind.
struct Closed(Child);

impl Drop for Closed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Closed {
    /// Starts `cmd` with stdout and stderr on pipes, at `info` so that stopping writes log lines, waits for one
    /// stdout line (the binary is running and has written), then closes both read ends.
    fn start(mut cmd: Command) -> Closed {
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("read a stdout line");
        assert!(line.starts_with('{'), "first stdout line: {line:?}");
        // Both read ends go here: every later write of the child fails with EPIPE.
        drop(err);
        Closed(child)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child we own, with a valid signal number.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }

    /// Sends SIGTERM and checks the exit: code 0 within `limit` (a panic would be 101, a hang a timeout).
    fn terminate(self, what: &str, limit: Duration) {
        self.stop_with(libc::SIGTERM, what, limit)
    }

    /// [`Closed::terminate`] with another signal (SIGINT takes the same path).
    fn stop_with(mut self, sig: i32, what: &str, limit: Duration) {
        // Let the child write into the closed pipes (stats lines every 100 ms) before the signal.
        std::thread::sleep(Duration::from_millis(300));
        self.signal(sig);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                assert_eq!(
                    status.code(),
                    Some(0),
                    "{what} with closed pipes exited {status} after SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} with closed pipes still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn producer_and_consumer_stop_on_sigterm_with_closed_pipes_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut p = command("producer");
    p.args([
        "--queue",
        &url,
        "--rate",
        "200",
        "--stats-interval",
        "100ms",
    ]);
    let producer = Closed::start(p);
    let mut c = command("consumer");
    c.args(["--queue", &url, "--work", "sleep:5ms", "--stats-interval"])
        .args(["100ms", "--drain-timeout", "3s", "--ledger"])
        .arg(dir.path().join("c0.ledger"));
    let consumer = Closed::start(c);
    std::thread::sleep(Duration::from_millis(500));
    producer.terminate("producer", Duration::from_secs(5));
    consumer.terminate("consumer", Duration::from_secs(3 + 5));

    // What is left in the queue is taken by a consumer with working pipes; then the ledgers must hold every
    // sequence number from 0 up without a gap (the producer sends in order) and none twice.
    let left = depth(&url);
    assert_eq!(left.in_flight, Some(0), "nothing held after the drain");
    let mut rest = testkit::Proc::spawn("rest", {
        let mut c = command("consumer");
        c.args(["--queue", &url, "--work", "none", "--count"])
            .arg(left.visible.max(1).to_string())
            .arg("--ledger")
            .arg(dir.path().join("c1.ledger"));
        c
    });
    if left.visible > 0 {
        assert!(
            rest.wait(Duration::from_secs(20)).success(),
            "{}",
            rest.stderr()
        );
    }
    drop(rest);
    let entries = ledger_entries(dir.path());
    let sent = entries.iter().map(|e| e.seq + 1).max().unwrap_or(0);
    assert!(sent > 20, "the producer sent for 0.5 s at 200/s: {sent}");
    let (distinct, lost, dups, unexpected) = tally(&entries, sent);
    assert_eq!(
        (distinct, lost, dups, unexpected),
        (sent, 0, 0, 0),
        "every confirmed message consumed exactly once"
    );
}

#[test]
fn remainder_stops_on_sigterm_with_closed_pipes() {
    let mut r = command("remainder");
    r.args(["--threads", "1", "--stats-interval", "100ms"]);
    Closed::start(r).terminate("remainder", Duration::from_secs(3));
}

#[test]
fn consumer_and_remainder_stop_on_sigint_with_closed_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = command("consumer");
    c.args([
        "--queue",
        &sqlite_url(dir.path()),
        "--stats-interval",
        "100ms",
    ]);
    Closed::start(c).stop_with(libc::SIGINT, "consumer", Duration::from_secs(5));
    let mut r = command("remainder");
    r.args(["--threads", "1", "--stats-interval", "100ms"]);
    Closed::start(r).stop_with(libc::SIGINT, "remainder", Duration::from_secs(3));
}

#[test]
fn demo_stops_on_sigterm_with_closed_pipes() {
    let mut d = command("demo");
    d.args(["--duration", "60s", "--rate", "50", "--consumers", "2"])
        .args(["--drain-timeout", "5s"]);
    // Stopping the producer, draining and the audit take a few seconds beyond the drain time.
    Closed::start(d).terminate("demo", Duration::from_secs(5 + 10));
}

/// A report that cannot be written is not a reader that went away: `--json` on a full disk (`/dev/full`)
/// says so at once, still runs and audits the demo (nothing lost), and exits 1, since the JSON lines it
/// promised are missing.
#[test]
fn demo_json_lines_that_cannot_be_written_fail_the_demo_and_say_why() {
    let out = command("demo")
        .args(["--duration", "2s", "--rate", "50", "--consumers", "1"])
        .args(["--json", "/dev/full"])
        .stdin(Stdio::null())
        .output()
        .expect("demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: cannot write the JSON lines") && stderr.contains("No space left"),
        "{stderr}"
    );
    assert!(
        stderr.contains("FAILED: nothing lost, but the report is incomplete"),
        "{stderr}"
    );
}
