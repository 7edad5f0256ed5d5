//! `demo --engine docker`: the demo's children as containers of the workload image on a Docker engine, the
//! second [`Launcher`] beside processes. The supervisor, the schedule and the autoscaler do not know which
//! one runs: they start, stop and reap [`ChildProc`](super::child::ChildProc)s either way.
//!
//! Each container runs one binary of the image with the same arguments a process would get, on the host's
//! network (queues on loopback are reachable), as the demo's own user, with the demo's temporary directory
//! bind-mounted at the same path, so the queue file, the ledgers and every path in the arguments mean the same
//! inside and out. Its stdout (the stats lines) and stderr (the log) come from the engine's log stream.
//!
//! Scale-in is a container stop: SIGTERM, then Docker's own SIGKILL after the grace, which is longer than the
//! consumer's drain. Every container carries the run's label, and [`super::docker::Engine::clean_up`] removes
//! everything with it when the demo ends, however it ends.

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::container::LogOutput;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::child::{Handle, Launcher, Role, Started, passed_env};
use super::docker::{Engine, Spec};

/// The exit code `docker run` uses when the engine could not run the container; the demo's children show
/// it for a container the engine refused to create or start (the log says why).
const ENGINE_FAILED: i32 = 125;
/// The remainder's CPU weight, as in docker-compose.yml: the lowest, so consumers always come first.
const REMAINDER_CPU_SHARES: i64 = 2;
/// How much of a container's stdout may wait for the demo to read it.
const STDOUT_BUFFER: usize = 64 * 1024;

/// Starts the demo's children as containers of `image`.
pub struct Containers {
    engine: Arc<Engine>,
    image: String,
    /// The demo's temporary directory, mounted at the same path.
    dir: PathBuf,
    /// The run's name: the prefix of its containers' names.
    run: String,
    /// Docker's wait between SIGTERM and SIGKILL when a container is stopped.
    grace: Duration,
}

impl Containers {
    /// A launcher for run `run` (also its containers' label value) on `engine`.
    pub fn new(
        engine: Arc<Engine>,
        image: &str,
        dir: &Path,
        run: &str,
        grace: Duration,
    ) -> Containers {
        Containers {
            engine,
            image: image.to_string(),
            dir: dir.to_path_buf(),
            run: run.to_string(),
            grace,
        }
    }
}

/// What the supervisor asks of a container.
#[derive(Clone, Copy, Debug)]
enum Ask {
    Stop,
    Hurry,
    Kill,
}

struct ContainerHandle {
    ask: UnboundedSender<Ask>,
    exit: Arc<Mutex<Option<ExitStatus>>>,
}

impl Handle for ContainerHandle {
    fn terminate(&mut self) {
        let _ = self.ask.send(Ask::Stop);
    }
    fn hurry(&mut self) {
        let _ = self.ask.send(Ask::Hurry);
    }
    fn kill(&mut self) {
        let _ = self.ask.send(Ask::Kill);
    }
    fn try_wait(&mut self) -> Option<ExitStatus> {
        *self
            .exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Everything one container's task owns.
struct Job {
    engine: Arc<Engine>,
    name: String,
    role: &'static str,
    image: String,
    cmd: Vec<String>,
    binds: Vec<String>,
    env: Vec<String>,
    user: String,
    grace: Duration,
    cpu_shares: Option<i64>,
}

impl Launcher for Containers {
    fn start(&self, role: Role, args: &[String], log: &Path) -> anyhow::Result<Started> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {role}'s log file {}", log.display()))?;
        let (binary, label) = match role {
            Role::Producer => ("producer", "producer"),
            Role::Consumer(_) => ("consumer", "consumer"),
            Role::Remainder(_) => ("remainder", "remainder"),
        };
        let name = format!("{}-{}", self.run, role.file_stem());
        let mut cmd = vec![binary.to_string()];
        cmd.extend(args.iter().cloned());
        let dir = self.dir.display();
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let job = Job {
            engine: Arc::clone(&self.engine),
            name: name.clone(),
            role: label,
            image: self.image.clone(),
            cmd,
            binds: vec![format!("{dir}:{dir}")],
            // Only what a process child gets: every setting is a flag.
            env: passed_env()
                .filter_map(|(k, v)| Some(format!("{k}={}", v.to_str()?)))
                .collect(),
            // The demo's own user, so the files it writes in the run directory are the demo's.
            user: format!("{uid}:{gid}"),
            grace: self.grace,
            cpu_shares: matches!(role, Role::Remainder(_)).then_some(REMAINDER_CPU_SHARES),
        };
        let (ask_tx, ask_rx) = unbounded_channel();
        let exit = Arc::new(Mutex::new(None));
        let (stdout, writer) = tokio::io::duplex(STDOUT_BUFFER);
        tokio::spawn(run(job, log_file, writer, ask_rx, Arc::clone(&exit)));
        Ok(Started {
            handle: Box::new(ContainerHandle { ask: ask_tx, exit }),
            stdout: Box::new(stdout),
            what: format!("container {name}"),
        })
    }
}

/// One container's life: create and start it, copy its output (stdout to the demo, stderr to the log) while
/// carrying out what the supervisor asks, then record its exit status.
async fn run(
    job: Job,
    mut log: std::fs::File,
    mut stdout: DuplexStream,
    mut asks: UnboundedReceiver<Ask>,
    exit: Arc<Mutex<Option<ExitStatus>>>,
) {
    let finish = |status: ExitStatus| {
        *exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    };
    let spec = Spec {
        name: &job.name,
        role: job.role,
        image: &job.image,
        cmd: job.cmd.clone(),
        binds: job.binds.clone(),
        env: job.env.clone(),
        user: Some(job.user.clone()),
        grace: job.grace,
        cpu_shares: job.cpu_shares,
    };
    let id = match job.engine.start(&spec).await {
        Ok(id) => id,
        Err(e) => {
            // One line, in the log the supervisor shows when a child fails; the stdout closes with `stdout`.
            let _ = writeln!(log, "{e}");
            finish(ExitStatus::from_raw(ENGINE_FAILED << 8));
            return;
        }
    };
    let mut output = std::pin::pin!(job.engine.output(&id));
    let mut asks_open = true;
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(LogOutput::StdOut { message })) => {
                    // The demo no longer reads once it is shutting down: its output is then dropped.
                    let _ = stdout.write_all(&message).await;
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    let _ = log.write_all(&message);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = writeln!(log, "(the demo stopped reading this container's output: {e})");
                    break;
                }
                None => break,
            },
            ask = asks.recv(), if asks_open => match ask {
                Some(a) => carry_out(&job, &id, a),
                None => asks_open = false,
            },
        }
    }
    // Every line it wrote has been passed on: the demo may now see its stdout close.
    drop(stdout);
    loop {
        tokio::select! {
            () = job.engine.wait(&id) => break,
            ask = asks.recv(), if asks_open => match ask {
                Some(a) => carry_out(&job, &id, a),
                None => asks_open = false,
            },
        }
    }
    let status = match job.engine.exit_code(&id).await {
        Ok(Some(code)) => exit_status(code),
        Ok(None) | Err(_) => {
            let _ = writeln!(log, "the engine cannot tell how the container exited");
            ExitStatus::from_raw(ENGINE_FAILED << 8)
        }
    };
    finish(status);
}

/// Sends the engine what the supervisor asked, without waiting for it (a stop returns only once the
/// container has exited).
fn carry_out(job: &Job, id: &str, ask: Ask) {
    let engine = Arc::clone(&job.engine);
    let id = id.to_string();
    let grace = job.grace;
    tokio::spawn(async move {
        // A container that has already exited refuses: nothing is lost by that.
        let _ = match ask {
            Ask::Stop => engine.stop(&id, grace).await,
            Ask::Hurry => engine.kill(&id, "SIGTERM").await,
            Ask::Kill => engine.kill(&id, "SIGKILL").await,
        };
    });
}

/// A container's exit code as a process's status: 128+N (what the container's init reports for a child
/// ended by signal N, and the engine for a SIGKILL) is that signal, as the supervisor judges processes.
fn exit_status(code: i64) -> ExitStatus {
    match i32::try_from(code) {
        Ok(c) if (129..=128 + 64).contains(&c) => ExitStatus::from_raw(c - 128),
        Ok(c) => ExitStatus::from_raw((c & 0xff) << 8),
        Err(_) => ExitStatus::from_raw(ENGINE_FAILED << 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_read_as_process_statuses() {
        assert!(exit_status(0).success());
        assert_eq!(exit_status(1).code(), Some(1));
        assert_eq!(exit_status(125).code(), Some(125));
        assert_eq!(exit_status(143).signal(), Some(libc::SIGTERM));
        assert_eq!(exit_status(137).signal(), Some(libc::SIGKILL));
        assert_eq!(exit_status(i64::MAX).code(), Some(125));
    }
}
