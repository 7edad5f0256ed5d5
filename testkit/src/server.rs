//! What the server launchers (Azurite, nats-server, redis-server, RabbitMQ) share: a free loopback port, a
//! child process whose output goes to a log file in the server's temp dir, a bounded wait until it is ready
//! that shows the end of that log when it is not, and a stop (a signal, a grace period, then SIGKILL) that
//! always reaps it. Each launcher keeps its own command line, readiness probe and temp dir.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now (the usual small race with other processes is accepted in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One plain HTTP/1.0 request to `127.0.0.1:port`: `METHOD path`, the extra header lines (each ending in
/// `\r\n`), no body. The status code and body, or `None` when nothing answers within 5 s. The servers' own
/// admin APIs (Prometheus, nats-server's monitor, RabbitMQ's management, Azurite) need no more than this.
pub fn http(port: u16, method: &str, path: &str, headers: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Some((status, body))
}

/// Runs one async call to completion on a throwaway runtime (tests are synchronous).
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A queue URL with extra `&`-separated options (may be empty) appended to its query, or as its query.
pub(crate) fn with_options(mut url: String, options: &str) -> String {
    if !options.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(options);
    }
    url
}

/// How long a stopped server has to exit after its signal before it is SIGKILLed.
const GRACE: Duration = Duration::from_secs(10);

/// A server's child process, SIGKILLed and reaped when dropped.
pub struct ServerProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// Kill what the process started too (a launcher script whose server runs below it).
    whole_tree: bool,
}

impl ServerProcess {
    /// Starts `cmd` with its stdout and stderr appended to `log` (which the server may write to as well);
    /// `install` says how to get the program when it cannot be started.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, install: &str) -> ServerProcess {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone the log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({e}): {install}"));
        ServerProcess {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            whole_tree: false,
        }
    }

    /// Stops (and kills) every descendant too, found through /proc, not only the process itself.
    pub fn with_whole_tree(mut self) -> ServerProcess {
        self.whole_tree = true;
        self
    }

    /// Polls `ready` every `poll` until it holds; panics with the end of the log when the process exits
    /// first or `limit` passes.
    pub fn wait_ready(&mut self, limit: Duration, poll: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if ready() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited at start: {status}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready within {limit:?}\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(poll);
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's last 20 lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sends `sig` (SIGTERM: as an operator would; SIGKILL: a crash), waits up to 10 s for the exit, then
    /// SIGKILLs it; reaped either way.
    pub fn stop(mut self, sig: i32) {
        if self.whole_tree {
            self.kill_tree(sig);
        } else {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe {
                libc::kill(self.child.id() as i32, sig);
            }
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Dropping SIGKILLs and reaps it.
    }

    /// Sends `sig` to the process, then to every descendant.
    fn kill_tree(&mut self, sig: i32) {
        let pid = self.child.id() as i32;
        // Stop the launcher first, so that it cannot start anything new, then its descendants.
        let below = descendants(pid);
        for p in std::iter::once(pid).chain(below) {
            // SAFETY: kill(2) on our own child or a process found under it.
            unsafe {
                libc::kill(p, sig);
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.whole_tree {
            self.kill_tree(libc::SIGKILL);
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Every descendant of `pid`, read from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // The parent pid is the second field after the command, which is in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|f| f.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}
