//! The real `demo` binary in a pseudo-terminal of 80 columns, as a new user runs it: stdin, stdout and stderr
//! all the terminal, keys read from it. Build every binary first: `cargo build --workspace --bins`.
//!
//! The pseudo-terminal is made with `openpty` from libc (already a dependency), rather than a pty crate.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The demo running in a pseudo-terminal, and everything it drew on it.
struct Tty {
    child: Child,
    master: File,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    /// Tells the reader to let go of its copy of the master, so that [`Tty::hang_up`] can close them all.
    stop_reading: Arc<AtomicBool>,
}

impl Tty {
    /// Starts `demo ARGS` with a `cols`×24 terminal as its controlling terminal and stdin/stdout/stderr.
    fn spawn(args: &[&str], cols: u16) -> Tty {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two file descriptors into the integers given; the name and termios are null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // openpty's descriptors are inherited across exec: the demo would hold the master open itself, and
        // closing the terminal (hang_up) would never hang it up.
        for fd in [master, slave] {
            // SAFETY: fcntl on descriptors just opened and owned here.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: both descriptors were just opened by openpty and are owned here alone.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = testkit::command("demo");
        cmd.args(args)
            .stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose controlling
        // terminal is the pty (stdin), as a terminal emulator does.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start demo in a pty");
        // Dropping `cmd` closes the parent's copies of the slave, so reads end (EIO) when the demo exits.
        drop(cmd);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup master");
        let s = screen.clone();
        let stop_reading = Arc::new(AtomicBool::new(false));
        let stop = stop_reading.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                // Wait for output at most 50 ms at a time, so that a stop request is seen.
                let mut fds = libc::pollfd {
                    fd: reader.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
                if unsafe { libc::poll(&mut fds, 1, 50) } <= 0 {
                    continue;
                }
                match reader.read(&mut buf) {
                    Ok(n) if n > 0 => s.lock().unwrap().extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
        });
        Tty {
            child,
            master,
            screen,
            reader: Some(thread),
            stop_reading,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Types `keys`.
    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("type");
    }

    /// Waits until the screen shows `needle`, at most `limit`.
    fn wait_for(&self, needle: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.screen().contains(needle) {
            assert!(
                Instant::now() < until,
                "no {needle:?} on the screen within {limit:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Closes the terminal, as closing its window or killing its tmux session does: every descriptor of the
    /// master side is closed, so the kernel hangs the terminal up (SIGHUP to the demo, end of file on reads).
    fn hang_up(&mut self) {
        self.stop_reading.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let devnull = File::open("/dev/null").expect("/dev/null");
        drop(std::mem::replace(&mut self.master, devnull));
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader ends once the slave is closed; give it a moment to take the last bytes.
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("demo did not exit within {limit:?}:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.reader.take());
    }
}

/// The screen's text lines: split at every carriage return, line feed and escape sequence (a redrawn status
/// line starts after a `\r` or a cursor move).
fn lines(screen: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            // The demo's sequences move the cursor or clear a line: what follows starts a new line.
            text.push('\n');
            continue;
        }
        text.push(c);
    }
    text.split(['\r', '\n'])
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn in_an_80_column_terminal_the_demo_shows_no_json_and_an_uncut_status_line() {
    let mut tty = Tty::spawn(&["--duration", "3s", "--rate", "50"], 80);
    let status = tty.wait(Duration::from_secs(40));
    let screen = tty.screen();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(!screen.contains("{\""), "JSON on the screen:\n{screen}");
    let lines = lines(&screen);
    // Status lines are redrawn in place, so they must never wrap (other lines may: they just scroll).
    for l in lines.iter().filter(|l| l.contains("depth ")) {
        assert!(
            l.chars().count() < 80,
            "{} columns: {l:?}",
            l.chars().count()
        );
    }
    // Every other line is wrapped between words: none runs past the edge, where the terminal would cut a word.
    for l in &lines {
        assert!(
            l.chars().count() < 80,
            "{} columns: {l:?}",
            l.chars().count()
        );
    }
    // The status line, whole: every figure is there, the last ones (consumers, p99, remainder) included.
    let status_line = lines
        .iter()
        .find(|l| l.contains(" run ") && l.contains("rem "))
        .unwrap_or_else(|| panic!("no status line:\n{lines:#?}"));
    for part in ["depth ", "in ", "out ", "cons 3", "p99 ", "rem "] {
        assert!(status_line.contains(part), "{part:?} in {status_line:?}");
    }
}

#[test]
fn under_the_autoscaler_a_key_is_recorded_as_manual_and_marked_on_the_chart() {
    let out = tempfile::tempdir().expect("tempdir");
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let json_path = json.path().to_str().expect("utf-8 path");
    // A target no backlog reaches: the autoscaler holds at its minimum, so any consumer added is the key's.
    let mut tty = Tty::spawn(
        &[
            "--autoscale",
            "target=100000,min=1,max=4,interval=1s",
            "--duration",
            "4s",
            "--rate",
            "20",
            "--scorecard-dir",
            out.path().to_str().expect("utf-8 path"),
            "--json",
            json_path,
        ],
        80,
    );
    tty.wait_for("depth ", Duration::from_secs(20));
    tty.type_keys("+");
    let status = tty.wait(Duration::from_secs(40));
    let screen = tty.screen();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(
        screen.contains("set by hand"),
        "the key is acknowledged:\n{screen}"
    );
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out.path().join(name)).expect(name))
            .expect("json")
    };
    let series = read("series.json");
    let manual = series["manual"].as_array().expect("manual events");
    assert_eq!(manual.len(), 1, "{series}");
    assert_eq!(manual[0]["source"], "key +");
    assert_eq!(manual[0]["consumers"], 2);
    let card = read("scorecard.json");
    assert_eq!(card["manual_changes"], 1, "{card}");
    // The engine never scaled out: the key's consumer is not credited to it.
    assert_eq!(card["worst_scale_out_s"], Value::Null, "{card}");
    let chart = std::fs::read_to_string(out.path().join("chart.svg")).expect("chart");
    let doc = roxmltree::Document::parse(&chart).expect("well-formed chart");
    assert!(
        doc.descendants()
            .filter_map(|n| n.text())
            .any(|t| t.trim() == "set by hand"),
        "the manual mark in the legend"
    );
    assert!(!screen.contains("{\""), "JSON on the screen:\n{screen}");
    // The JSON lines went to --json FILE instead.
    let written = std::fs::read_to_string(json.path()).expect("the --json file");
    let kinds: Vec<String> = written
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON lines");
            v["kind"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "interval").count() >= 2,
        "{written}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("summary"),
        "{written}"
    );
}

#[test]
fn minus_at_no_consumers_says_why_nothing_changed() {
    let mut tty = Tty::spawn(
        &["--duration", "6s", "--rate", "20", "--consumers", "1"],
        80,
    );
    tty.wait_for("depth ", Duration::from_secs(30));
    tty.type_keys("--");
    tty.wait_for("no consumer to remove", Duration::from_secs(10));
    let status = tty.wait(Duration::from_secs(40));
    let screen = tty.screen();
    assert!(status.success(), "{status}:\n{screen}");
    assert_eq!(
        screen.matches("no consumer to remove").count(),
        1,
        "{screen}"
    );
}

#[test]
fn closing_the_terminal_stops_the_demo_and_removes_its_directory() {
    // A run far longer than the test: only the hang-up can end it in time.
    let mut tty = Tty::spawn(&["--duration", "120s", "--rate", "50"], 80);
    tty.wait_for("depth ", Duration::from_secs(30));
    let screen = tty.screen();
    let dir = screen
        .split_whitespace()
        .find(|w| w.contains("queue-demo-"))
        .map(|w| w.trim_matches(|c: char| !(c.is_alphanumeric() || "/-_.".contains(c))))
        .map(std::path::PathBuf::from);
    tty.hang_up();
    let started = Instant::now();
    // Before the fix the key reader spun on the closed terminal and the demo waited for it forever.
    let status = tty.wait(Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(status.code().is_some(), "ended by a signal: {status}");
    if let Some(dir) = dir.filter(|d| d.is_absolute()) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
