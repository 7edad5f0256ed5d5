//! The demo's child processes: finding the real binaries, starting them so that they can never outlive the
//! demo, reading their stats lines, signalling and reaping them.
//!
//! Each child runs in its own process group, so a Ctrl-C typed in the terminal reaches only the demo, which
//! then stops the children in its own order (producer first, consumers after the drain). Its stdout (JSON
//! stats lines) is read by a task that forwards every line to the demo; its stderr goes to a log file, shown
//! when it fails.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;
use workload::contract::{self, Stats};

/// How many lines of a failed child's log are shown.
const LOG_TAIL_LINES: usize = 15;

/// Environment variables passed to children. Everything else is cleared, so that a stray `PRODUCER_COUNT` or
/// `CONSUMER_WORK` in the user's shell cannot change what the demo runs behind its back: the demo passes
/// every setting as a flag.
const PASSED_ENV: &[&str] = &["RUST_LOG", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "TZ"];

/// The binaries the demo runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub producer: PathBuf,
    pub consumer: PathBuf,
    pub remainder: PathBuf,
}

impl Binaries {
    /// Finds the binaries in `dir`, or beside the demo's own executable.
    ///
    /// # Errors
    /// When one is missing, naming every missing one (and how to build them when they should be beside the demo).
    pub fn locate(dir: Option<&Path>, with_remainder: bool) -> anyhow::Result<Binaries> {
        let given = dir.is_some();
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()
                .context("cannot tell where the demo's executable is (pass --bin-dir)")?
                .parent()
                .map(Path::to_path_buf)
                .context("the demo's executable has no directory (pass --bin-dir)")?,
        };
        let bins = Binaries {
            producer: dir.join("producer"),
            consumer: dir.join("consumer"),
            remainder: dir.join("remainder"),
        };
        let mut needed = vec![&bins.producer, &bins.consumer];
        if with_remainder {
            needed.push(&bins.remainder);
        }
        let missing: Vec<&Path> = needed
            .into_iter()
            .filter(|p| !p.is_file())
            .map(PathBuf::as_path)
            .collect();
        if missing.is_empty() {
            return Ok(bins);
        }
        let text = missing_text(&dir, &missing, given);
        // A --bin-dir that lacks them is the user's input (exit 2); beside the demo, the build is (exit 1).
        Err(if given {
            workload::cli::usage(text).into()
        } else {
            anyhow::anyhow!(text)
        })
    }
}

/// Why the demo cannot start without `missing`. Beside the demo they are missing because the workspace was not
/// all built, so the build is the fix; in a `--bin-dir` the user chose, a build would not put them there, so
/// the message names what is missing where, and the flag.
fn missing_text(dir: &Path, missing: &[&Path], given: bool) -> String {
    if !given {
        let paths: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        return format!(
            "missing {}: build all binaries first: cargo build --release (the demo runs the binaries beside \
             it; --bin-dir DIR points elsewhere)",
            paths.join(", ")
        );
    }
    let names: Vec<String> = missing
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    // "producer", "producer or consumer", "producer, consumer or remainder".
    let names = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!(
        "--bin-dir {} has no {names} binary: point --bin-dir at the directory holding them, or leave it out to \
         use the ones beside the demo",
        dir.display()
    )
}

/// What a child is in the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Producer,
    /// Consumer number K (from 1, never reused, so ledgers and logs are never shared).
    Consumer(usize),
    /// Remainder number K (from 1). The demo runs one unless the autoscaler gives it the spare slots.
    Remainder(usize),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Producer => f.write_str("producer"),
            Role::Consumer(k) => write!(f, "consumer {k}"),
            Role::Remainder(1) => f.write_str("remainder"),
            Role::Remainder(k) => write!(f, "remainder {k}"),
        }
    }
}

impl Role {
    /// The name used for files: `producer`, `consumer-3`, `remainder`.
    pub fn file_stem(&self) -> String {
        match self {
            Role::Consumer(k) => format!("consumer-{k}"),
            Role::Remainder(k) if *k > 1 => format!("remainder-{k}"),
            other => other.to_string(),
        }
    }
}

/// Where a child is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// Sent SIGTERM at this time; it is draining.
    Stopping(Instant),
    Exited(ExitStatus),
}

/// What a child's stdout reader reports.
#[derive(Debug)]
pub enum Event {
    /// A stats line from child `id` (an index into the demo's list of children), parsed and as written.
    Stats(usize, Box<Stats>, String),
    /// A stdout line that is not a stats line: a broken contract, reported once, with the reason.
    NotStats(usize, String, String),
    /// Stdout closed: every line the child wrote has been forwarded.
    Closed(usize),
}

/// One running (or finished) child.
pub struct ChildProc {
    pub role: Role,
    /// How it is known to the system: `pid 1234`, or `container NAME`.
    pub what: String,
    pub log: PathBuf,
    /// The ledger it writes, for consumers.
    pub ledger: Option<PathBuf>,
    pub state: State,
    /// Whether stdout reached its end, so that a summary line written just before exiting is not missed.
    pub stdout_closed: bool,
    /// Whether the demo killed it (SIGKILL): its exit status is then no failure of its own.
    pub killed: bool,
    /// Whether it was told to hurry (a second SIGTERM).
    pub hurried: bool,
    /// Its latest interval line, and its summary line once written.
    pub latest: Option<Stats>,
    pub summary: Option<Stats>,
    handle: Box<dyn Handle>,
}

/// What starts the demo's children: processes on this machine ([`Processes`]), or containers of the image
/// on a Docker engine (`super::containers::Containers`). The supervisor only ever sees a [`Started`] child.
pub trait Launcher {
    /// Starts `role` with `args` (the binary is the role's), its stderr into `log`.
    ///
    /// # Errors
    /// When it cannot be started at all (a missing binary, a log that cannot be created). A container's start
    /// is asynchronous: an engine that refuses it shows as the child exiting 125, its log saying why.
    fn start(&self, role: Role, args: &[String], log: &Path) -> anyhow::Result<Started>;
}

/// A child just started: its handle and its stdout (stats lines).
pub struct Started {
    pub handle: Box<dyn Handle>,
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub what: String,
}

/// Signals and reaps one child, whatever runs it.
pub trait Handle: Send {
    /// Asks it to stop gracefully (SIGTERM; a consumer drains what it holds, then exits 0).
    fn terminate(&mut self);
    /// A second SIGTERM: a consumer then releases what it holds at once.
    fn hurry(&mut self);
    /// Stops it at once (SIGKILL).
    fn kill(&mut self);
    /// Its exit status once it has exited.
    fn try_wait(&mut self) -> Option<ExitStatus>;
}

/// Children as processes of this machine, from the binaries beside the demo (or --bin-dir).
pub struct Processes {
    pub bins: Binaries,
}

impl Launcher for Processes {
    fn start(&self, role: Role, args: &[String], log: &Path) -> anyhow::Result<Started> {
        let program = match role {
            Role::Producer => &self.bins.producer,
            Role::Consumer(_) => &self.bins.consumer,
            Role::Remainder(_) => &self.bins.remainder,
        };
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {role}'s log file {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(passed_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            // Its own process group: a terminal Ctrl-C goes to the demo only, which stops children in order.
            .process_group(0)
            // Dropping the handle (an error path, a panic) kills the child rather than orphaning it.
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {role} ({})", program.display()))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .context("a child that was just started has no pid")?;
        let stdout = child
            .stdout
            .take()
            .context("a child that was just started has no stdout")?;
        Ok(Started {
            handle: Box::new(ProcessHandle {
                pid,
                child,
                exited: false,
            }),
            stdout: Box::new(stdout),
            what: format!("pid {pid}"),
        })
    }
}

/// The environment a child gets: [`PASSED_ENV`], from the demo's own.
pub fn passed_env() -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    PASSED_ENV
        .iter()
        .filter_map(|k| Some((*k, std::env::var_os(k)?)))
}

struct ProcessHandle {
    pid: i32,
    child: Child,
    exited: bool,
}

impl ProcessHandle {
    fn signal(&self, sig: i32) {
        // Only while not yet reaped: until then the pid is still ours (a zombie at worst), never a stranger's.
        if !self.exited {
            // SAFETY: kill(2) with our own child's pid and a valid signal number has no memory effects.
            unsafe {
                libc::kill(self.pid, sig);
            }
        }
    }
}

impl Handle for ProcessHandle {
    fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }
    fn hurry(&mut self) {
        self.signal(libc::SIGTERM);
    }
    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }
    fn try_wait(&mut self) -> Option<ExitStatus> {
        // Not yet, or the OS cannot tell (then it is treated as running and killed on drop).
        let status = self.child.try_wait().ok().flatten()?;
        self.exited = true;
        Some(status)
    }
}

impl ChildProc {
    /// Starts `role` through `launcher` as child `id`, stderr into `log`, stdout forwarded to `events`.
    ///
    /// # Errors
    /// When the launcher cannot start it.
    pub fn spawn(
        id: usize,
        role: Role,
        launcher: &dyn Launcher,
        args: &[String],
        log: PathBuf,
        ledger: Option<PathBuf>,
        events: UnboundedSender<Event>,
    ) -> anyhow::Result<ChildProc> {
        let started = launcher.start(role, args, &log)?;
        tokio::spawn(forward(id, started.stdout, events));
        Ok(ChildProc {
            role,
            what: started.what,
            log,
            ledger,
            state: State::Running,
            stdout_closed: false,
            killed: false,
            hurried: false,
            latest: None,
            summary: None,
            handle: started.handle,
        })
    }

    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    pub fn has_exited(&self) -> bool {
        matches!(self.state, State::Exited(_))
    }

    /// Exited and every stdout line read.
    pub fn finished(&self) -> bool {
        self.has_exited() && self.stdout_closed
    }

    /// Asks it to stop gracefully (SIGTERM); a consumer drains what it holds, then exits 0.
    pub fn terminate(&mut self) {
        if self.is_running() {
            self.handle.terminate();
            self.state = State::Stopping(Instant::now());
        }
    }

    /// A second SIGTERM: a consumer then releases what it holds at once instead of finishing it.
    pub fn hurry(&mut self) {
        if matches!(self.state, State::Stopping(_)) && !self.hurried {
            self.handle.hurry();
            self.hurried = true;
        }
    }

    /// Stops it at once (SIGKILL).
    pub fn kill(&mut self) {
        if !self.has_exited() {
            self.handle.kill();
            self.killed = true;
        }
    }

    /// Checks whether it exited; returns the state it was in when it did (for judging the exit), or `None`.
    pub fn reap(&mut self) -> Option<State> {
        if self.has_exited() {
            return None;
        }
        let status = self.handle.try_wait()?;
        Some(std::mem::replace(&mut self.state, State::Exited(status)))
    }

    /// The exit status, once exited.
    pub fn status(&self) -> Option<ExitStatus> {
        match self.state {
            State::Exited(s) => Some(s),
            _ => None,
        }
    }

    /// The last lines of its log, framed for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        if tail.is_empty() {
            return format!("its log {} is empty", self.log.display());
        }
        let mut out = format!("the end of its log ({}):\n", self.log.display());
        for line in tail {
            out.push_str("  | ");
            out.push_str(line);
            out.push('\n');
        }
        out.pop();
        out
    }
}

/// Forwards a child's stdout lines as events until it closes.
async fn forward(
    id: usize,
    stdout: Box<dyn AsyncRead + Send + Unpin>,
    events: UnboundedSender<Event>,
) {
    let mut lines = BufReader::new(stdout).lines();
    // A read error ends the stream like a close: the child is reaped and judged by its exit status anyway.
    while let Ok(Some(line)) = lines.next_line().await {
        let event = match contract::parse(&line) {
            Ok(stats) => Event::Stats(id, Box::new(stats), line),
            Err(e) => Event::NotStats(id, line, e.to_string()),
        };
        // The demo dropped its receiver: it is shutting down and no longer reads.
        if events.send(event).is_err() {
            return;
        }
    }
    let _ = events.send(Event::Closed(id));
}

/// Makes the kernel SIGKILL the child if the demo dies, even by SIGKILL, where kill-on-drop cannot run.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec; it calls only async-signal-safe functions
    // (prctl, getppid, raise) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The demo may have died between fork and prctl: then no signal would ever come.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}
