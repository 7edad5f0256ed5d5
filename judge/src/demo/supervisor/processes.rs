//! Starting, reaping and stopping the demo's children, and choosing what starts them (processes or
//! containers).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use super::{ABORT_GRACE, CHILD_STATS_INTERVAL, Demo, KILL_WAIT, Phase, STOP_GRACE};
use crate::demo::child::{Binaries, ChildProc, Launcher, Processes, Role, State};
use crate::demo::containers::Containers;
use crate::demo::{Config, Engine, docker};

impl Demo<'_> {
    /// After a failure: stops every child quickly, reporting nothing more.
    pub(super) async fn abort(&mut self) {
        self.phase = Phase::Stopping;
        // Errors here would only repeat the failure being reported.
        let _ = self.stop_all(ABORT_GRACE).await;
    }

    /// SIGTERM to every running child, SIGKILL to those still running after `grace`.
    pub(super) async fn stop_all(&mut self, grace: Duration) -> anyhow::Result<()> {
        for c in &mut self.children {
            c.terminate();
        }
        let all_done = |d: &Demo<'_>| d.children.iter().all(ChildProc::finished);
        if self.run_until(Instant::now() + grace, all_done).await? {
            return Ok(());
        }
        let mut killed = Vec::new();
        for c in self.children.iter_mut().filter(|c| !c.has_exited()) {
            c.kill();
            killed.push(c.role);
        }
        for role in killed {
            self.warn(format!(
                "{role} did not stop within {grace:?} of SIGTERM: killed"
            ));
        }
        // After SIGKILL, stdout closes with the process; wait for both, briefly.
        self.run_until(Instant::now() + KILL_WAIT, all_done).await?;
        Ok(())
    }

    pub(super) fn spawn_consumer(&mut self) -> anyhow::Result<()> {
        let k = self.next_consumer;
        self.next_consumer += 1;
        let ledger = self
            .dir
            .join("ledgers")
            .join(format!("consumer-{k}.ledger"));
        let args = vec![
            "--queue".to_string(),
            self.url.clone(),
            "--work".into(),
            self.config.work.to_string(),
            "--max-in-flight".into(),
            self.config.max_in_flight.to_string(),
            "--ledger".into(),
            ledger.display().to_string(),
            "--stats-interval".into(),
            CHILD_STATS_INTERVAL.into(),
        ];
        let i = self.spawn(Role::Consumer(k), &args, Some(ledger))?;
        // The first consumers start silently with the demo; later ones are news, but for the autoscaler's
        // (its decision line says it).
        if self.launched_children && self.config.autoscale.is_none() {
            let msg = format!(
                "{} started ({})",
                self.children[i].role, self.children[i].what
            );
            self.console.note(&msg);
        }
        Ok(())
    }

    pub(super) fn spawn_remainder(&mut self, threads: usize) -> anyhow::Result<()> {
        let k = self.next_remainder;
        self.next_remainder += 1;
        let args = vec![
            "--threads".to_string(),
            threads.to_string(),
            "--stats-interval".into(),
            CHILD_STATS_INTERVAL.into(),
        ];
        self.spawn(Role::Remainder(k), &args, None)?;
        Ok(())
    }

    /// Starts a child; returns its index.
    pub(super) fn spawn(
        &mut self,
        role: Role,
        args: &[String],
        ledger: Option<PathBuf>,
    ) -> anyhow::Result<usize> {
        let id = self.children.len();
        let log = self
            .dir
            .join("logs")
            .join(format!("{}.log", role.file_stem()));
        let child = ChildProc::spawn(
            id,
            role,
            self.launcher.as_ref(),
            args,
            log,
            ledger,
            self.events_tx.clone(),
        )?;
        self.children.push(child);
        Ok(id)
    }

    /// Reaps exited children. A child that exits without being asked to (but the producer, when its run is
    /// over), or fails while being stopped before
    /// the final stop, is a failure of the demo. During the final stop a failure is only a warning: the run is
    /// over, and the audit says whether it mattered.
    pub(super) fn reap(&mut self) -> anyhow::Result<()> {
        for i in 0..self.children.len() {
            let Some(before) = self.children[i].reap() else {
                continue;
            };
            let c = &self.children[i];
            let status = c.status().map(|s| s.to_string()).unwrap_or_default();
            // A remainder holds nothing: one that the SIGTERM it was sent ends before its handler is in place
            // (the autoscaler can stop one it has just started) has stopped, not failed.
            let remainder_termed = matches!(c.role, Role::Remainder(_))
                && c.status()
                    .and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s))
                    == Some(libc::SIGTERM);
            let failed = c.status().is_some_and(|s| !s.success()) && !c.killed && !remainder_termed;
            let failure = match before {
                // The producer stops by itself at the end of its --duration.
                State::Running if c.role == Role::Producer && !failed => None,
                State::Running => Some(format!("{} exited unexpectedly ({status})", c.role)),
                State::Stopping(_) if failed => {
                    Some(format!("{} failed while stopping ({status})", c.role))
                }
                _ => None,
            };
            if let Some(f) = failure {
                if self.phase == Phase::Stopping {
                    let msg = format!("{f}; see {}", c.log.display());
                    self.warn(msg);
                } else {
                    return Err(anyhow!("{f}; {}", c.log_tail()));
                }
            }
        }
        Ok(())
    }
}

/// What starts the demo's children, and the Docker engine to clean up after, for `--engine docker`.
///
/// # Errors
/// When the engine cannot be reached or does not hold the image.
pub(super) async fn launcher(
    config: &Config,
    bins: Option<Binaries>,
    dir: &Path,
) -> anyhow::Result<(Box<dyn Launcher>, Option<Arc<docker::Engine>>)> {
    let (image, socket) = match (&config.engine, bins) {
        (Engine::Docker { image, socket }, _) => (image, socket),
        (Engine::Processes, Some(bins)) => return Ok((Box::new(Processes { bins }), None)),
        (Engine::Processes, None) => return Err(anyhow!("the demo's binaries were not located")),
    };
    // The temporary directory's unique name names the run: its containers' label and their names' prefix.
    let run = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the demo's temporary directory has no name")?
        .to_string();
    let engine = Arc::new(docker::Engine::connect(socket, &run).await?);
    engine.check_image(image).await.with_context(|| {
        format!("--engine docker runs the image {image}: build it with `make image` (or name one with --image)")
    })?;
    let containers = Containers::new(Arc::clone(&engine), image, dir, &run, STOP_GRACE);
    Ok((Box::new(containers), Some(engine)))
}
