//! The demo run, phase by phase.
//!
//! 1. Start the consumers, the remainder and the producer; apply the consumer schedule and the keys until
//!    `--duration` passes or a stop is asked for.
//! 2. Stop the producer (SIGTERM) and wait for its summary: it says how many messages the queue confirmed.
//! 3. Drain: consumers keep working until the queue is empty (at most `--drain-timeout`). If none are running,
//!    some are started, or the backlog would never drain.
//! 4. Stop the consumers and the remainder (SIGTERM, SIGKILL after a grace period).
//! 5. Audit the ledgers against the producer's summary.
//!
//! One loop ([`Demo::run_until`]) serves every phase: it forwards stats lines, keys and signals, reaps
//! children, applies the schedule and draws the progress, until the phase's condition holds. A child that
//! exits without being asked to, or fails, stops the demo with its log; every child is killed if the demo
//! returns early, whatever the reason.
//!
//! [`processes`] starts (through the launcher: processes or containers), reaps and stops the children;
//! [`scale`] applies keys, the autoscaler and the target; [`measure`] reads their figures, records the series
//! and sums the run up.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod measure;
mod processes;
mod scale;

use anyhow::{Context, anyhow};
use queues::{Depth, ErrorKind, Queue};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::MissedTickBehavior;
use workload::contract::Stats;
use workload::shutdown::Shutdown;

use super::autoscale::{Autoscale, Policy};
use super::child::{Binaries, ChildProc, Event, Launcher, Role};
use super::console::{Console, Phase};
use super::keys::{self, Keys};
use super::record::{Recorder, write_scorecard};
use super::report::{Files, Summary, header};
use super::{Config, Engine};

/// How often the loop reaps children, applies the schedule and checks phase conditions.
const STEP: Duration = Duration::from_millis(100);
/// How often progress is shown (and the interval JSON line written).
const PROGRESS: Duration = Duration::from_secs(1);
/// How long the producer may take to stop after SIGTERM: it stops between two publishes.
const PRODUCER_GRACE: Duration = Duration::from_secs(10);
/// How long consumers and the remainder may take to stop after SIGTERM before SIGKILL. A consumer drains
/// what it holds for up to its own --drain-timeout (8 s by default), so this is a little longer.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a child to be reaped after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for children to stop when the demo fails: long enough for a clean exit, short enough
/// not to make a failing demo slow.
const ABORT_GRACE: Duration = Duration::from_secs(3);
/// How long after starting its children the demo's timeline begins. A child writes its stats lines a whole
/// number of seconds after it starts (its own start takes 50-100 ms in a debug build); beginning the timeline
/// after theirs means each of the demo's ticks finds the lines of the second just ended, not the one before.
const SETTLE: Duration = Duration::from_millis(300);
/// Stats interval passed to every child: one line per second, like the demo's own.
const CHILD_STATS_INTERVAL: &str = "1s";

/// Runs the demo; returns its summary (already printed), or an error when a child failed or could not start.
///
/// # Errors
/// When the binaries are missing, the temporary directory or queue cannot be made, a child cannot start or
/// fails. Every child has been stopped by the time it returns.
pub async fn run(config: Config) -> anyhow::Result<Summary> {
    let bins = match config.engine {
        Engine::Processes => Some(Binaries::locate(
            config.bin_dir.as_deref(),
            config.remainder_threads.is_some(),
        )?),
        Engine::Docker { .. } => None,
    };
    let tmp = tempfile::Builder::new()
        .prefix("queue-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo")?;
    let dir = tmp.path().to_path_buf();
    for sub in ["ledgers", "logs"] {
        std::fs::create_dir(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    hang_up_stops(&shutdown).context("cannot install the SIGHUP handler")?;
    let json = match &config.json {
        Some(path) => Some(Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create --json file {}", path.display()))?,
        ) as Box<dyn Write + Send>),
        // On a terminal the live view is all there is: JSON lines there would scroll it away.
        None if std::io::stdout().is_terminal() => None,
        None => Some(Box::new(std::io::stdout()) as Box<dyn Write + Send>),
    };
    // The producer's stdout, kept so that `audit` can re-run on a kept directory.
    let producer_out = std::fs::File::create(dir.join(PRODUCER_OUT))
        .with_context(|| format!("cannot create {}", dir.join(PRODUCER_OUT).display()))?;
    let keys = Keys::start().context("cannot read keys from the terminal")?;
    // Last of the set-up, after everything else that can fail: an embedded queue's background thread opens
    // the file a moment after the queue opens, and a failure just after that raced the removal of the
    // temporary directory, leaving it behind with the queue's -wal and -shm files in it.
    let (launcher, engine) = processes::launcher(&config, bins, &dir).await?;
    let url = match &config.queue {
        Some(q) => q.url.clone(),
        None => queues::registry::local_url(&dir).context(
            "this build has no queue that runs without a server: give --queue URL, or rebuild with --features sqlite",
        )?,
    };
    // Opening it here creates the file (or the broker's queue) before any child starts, and proves it works.
    let queue = queues::open(&url).await.with_context(|| {
        format!(
            "cannot create the demo's queue {:?}",
            workload::redact::url(&url)
        )
    })?;
    reach(queue.as_ref(), &url).await?;
    let mut console = Console::new(json);
    console.note(&header(&config, &dir));
    if keys.is_some() {
        console.set_legend(keys::LEGEND);
    }
    let (events_tx, events_rx) = unbounded_channel();
    let launched = Instant::now();
    let mut demo = Demo {
        config: &config,
        launcher,
        dir: dir.clone(),
        url,
        queue,
        shutdown,
        keys,
        console,
        events_tx,
        events_rx,
        children: Vec::new(),
        launched,
        launched_children: false,
        // Set when the first children are up (see SETTLE).
        started: launched,
        phase: Phase::Running,
        target: config.consumers.initial,
        last_nonzero: config.consumers.initial,
        consumers_max: 0,
        next_consumer: 1,
        next_step: 0,
        next_progress: launched + PROGRESS,
        depth: None,
        depth_error: None,
        undrained: false,
        producer_started: launched,
        next_scale: launched,
        next_remainder: 1,
        recorder: Recorder::default(),
        producer_out: Some(producer_out),
        policy: config.autoscale.as_ref().map(Autoscale::start),
        starting: Vec::new(),
        warnings: Vec::new(),
        not_json_reported: Vec::new(),
    };
    let result = demo.run().await;
    // Restores the terminal before anything else is printed, and ends the key reader.
    demo.keys = None;
    demo.console.finish();
    let summary = match result {
        Ok(stop_reason) => demo.summarise(stop_reason).await,
        Err(e) => {
            demo.abort().await;
            Err(e)
        }
    };
    // The demo's own handle is the queue's last connection (every child has stopped): closing it now lets an
    // embedded queue remove its -wal and -shm files before the report lists the kept directory, which named
    // files already gone by the time the user looked.
    drop(demo.queue);
    // Every container, network and volume of the run goes, however the run ended.
    let summary = match (summary, engine) {
        (summary, None) => summary,
        (summary, Some(engine)) => match (engine.clean_up().await, summary) {
            (Ok(_), summary) => summary,
            (Err(e), Ok(_)) => {
                Err(anyhow!(e).context("the demo's containers could not all be removed"))
            }
            (Err(e), Err(first)) => Err(first.context(format!(
                "and the demo's containers could not all be removed: {e}"
            ))),
        },
    };
    let failed = summary.as_ref().map_or(true, |s| !s.succeeded());
    // Kept on failure whatever --keep says: the logs are what explains it.
    let files = if config.keep || failed {
        Files::Kept(tmp.keep())
    } else {
        drop(tmp);
        Files::Removed
    };
    match summary {
        Ok(mut s) => {
            s.files = files;
            demo.console.emit(&s.line(launched));
            s.json_failed = demo.console.json_failed().map(String::from);
            // Through the console, which wraps long lines between words on a terminal.
            let mut report = Vec::new();
            let _ = s.write_report(&mut report);
            demo.console
                .note(String::from_utf8_lossy(&report).trim_end_matches('\n'));
            if let Some(out) = &config.scorecard_dir {
                write_scorecard(&config, out, &s, std::mem::take(&mut demo.recorder))?;
            }
            Ok(s)
        }
        Err(e) => Err(anyhow!(
            "{e:#}\nthe demo's files, logs included, are kept in {}",
            dir.display()
        )),
    }
}

/// How long the demo waits for its queue's first answer before it gives up starting.
const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads the queue's depth once before any child starts: broker backends connect on first use, so opening
/// proved nothing, and a broker that is down made the children retry for the whole run and the drain wait out
/// --drain-timeout before the demo failed. A refused connection, refused credentials or no answer fail the demo
/// at once, with the cause; other errors (a topic not made yet) are left to the run, which reports them.
async fn reach(queue: &dyn Queue, url: &str) -> anyhow::Result<()> {
    let failed = match tokio::time::timeout(REACH_TIMEOUT, queue.depth()).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Denied) => {
            anyhow!(e)
        }
        Ok(Err(_)) => return Ok(()),
        Err(_) => anyhow!("no answer within {} s", REACH_TIMEOUT.as_secs()),
    };
    Err(failed.context(format!(
        "cannot reach the demo's queue {:?}",
        workload::redact::url(url)
    )))
}

/// The file in the demo's directory holding the producer's stdout (its stats lines), for `audit --producer`.
pub const PRODUCER_OUT: &str = "producer.jsonl";

/// Closing the terminal (SIGHUP) stops the demo as a second Ctrl-C would: at once, without a drain nobody
/// is there to watch, but still stopping every child and removing the temporary directory.
fn hang_up_stops(shutdown: &Shutdown) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let s = shutdown.clone();
    tokio::spawn(async move {
        if hup.recv().await.is_some() {
            s.force();
        }
    });
    Ok(())
}

struct Demo<'a> {
    config: &'a Config,
    /// What starts the children: processes or containers.
    launcher: Box<dyn Launcher>,
    dir: PathBuf,
    url: String,
    queue: Arc<dyn Queue>,
    shutdown: Shutdown,
    keys: Option<Keys>,
    console: Console,
    events_tx: UnboundedSender<Event>,
    events_rx: UnboundedReceiver<Event>,
    /// Every child started, in order; events refer to them by index, so entries are never removed.
    children: Vec<ChildProc>,
    /// When the demo began, for its total duration.
    launched: Instant,
    /// The origin of the demo's timeline: `--duration`, schedule steps and progress ticks count from it.
    started: Instant,
    /// Whether the first children have been started (later consumers are announced).
    launched_children: bool,
    phase: Phase,
    /// Consumers that should be running, from the schedule and the keys.
    target: usize,
    /// The latest nonzero target: what to start when the drain finds no consumer running.
    last_nonzero: usize,
    consumers_max: usize,
    /// The number the next consumer gets (consumer-K.ledger): never reused.
    next_consumer: usize,
    /// The next schedule step to apply.
    next_step: usize,
    next_progress: Instant,
    /// The queue depth last read, `None` when the read failed.
    depth: Option<Depth>,
    /// The last error reading the depth, shown once (and again when it changes), until a read succeeds.
    depth_error: Option<String>,
    /// The drain ran out of --drain-timeout (the user did not stop it): a failure unless the queue is seen
    /// empty at the end.
    undrained: bool,
    /// When the producer started: the load shape's zero, and the time series' origin.
    producer_started: Instant,
    /// When the autoscaler next decides.
    next_scale: Instant,
    /// The number the next remainder gets.
    next_remainder: usize,
    /// The time series the scorecard grades, and the consumer counts set by hand.
    recorder: Recorder,
    /// Where the producer's stats lines are copied (`None` once writing failed: reported once).
    producer_out: Option<std::fs::File>,
    /// The autoscaler's policy, with its state (with --autoscale).
    policy: Option<Box<dyn Policy>>,
    /// When each consumer asked for but not yet started becomes ready (`start-delay`), earliest first.
    starting: Vec<Instant>,
    warnings: Vec<String>,
    /// Children already reported for writing a non-JSON stdout line (reported once each).
    not_json_reported: Vec<usize>,
}

impl Demo<'_> {
    /// Phases 1 to 4; returns why the demo stopped, for the report.
    async fn run(&mut self) -> anyhow::Result<String> {
        self.reconcile()?;
        // With the autoscaler, remainders fill the spare slots (reconcile starts them); otherwise one runs.
        if let (Some(threads), None) = (self.config.remainder_threads, &self.config.autoscale) {
            self.spawn_remainder(threads.get())?;
        }
        let mut args = vec!["--queue".to_string(), self.url.clone()];
        match &self.config.shape {
            Some(shape) => args.extend(["--shape".into(), shape.to_string()]),
            None => args.extend(["--rate".into(), self.config.rate.to_string()]),
        }
        if let Some(work) = &self.config.stamp_work {
            args.extend(["--work".into(), work.clone()]);
        }
        args.extend([
            "--size".into(),
            self.config.size.to_string(),
            // The producer times its own run, so it sends exactly rate × duration messages; the demo's
            // timeline starts a little after the producer does (SETTLE), so its SIGTERM at the end of the
            // run normally finds the producer already done.
            "--duration".into(),
            humantime::format_duration(self.config.duration).to_string(),
            "--stats-interval".into(),
            CHILD_STATS_INTERVAL.into(),
        ]);
        // The demo has one producer, so its id is simply 1; the run id is the producer's own (random), and the
        // audit reads it back from the producer's summary.
        args.extend(["--producer-id".into(), "1".into()]);
        let producer = self.spawn(Role::Producer, &args, None)?;
        self.producer_started = Instant::now();
        self.launched_children = true;
        self.started = Instant::now() + SETTLE;
        self.next_progress = self.started + PROGRESS;
        self.next_scale = self.started;

        // 1. Run.
        let deadline = self.started + self.config.duration;
        let asked = self
            .run_until(deadline, |d| d.shutdown.is_requested())
            .await?;
        if asked {
            self.console.note(
                "stopping: the producer first, then the consumers once the queue is drained \
                 (ask again to skip the drain)",
            );
        }
        let reason = if asked {
            format!(
                "on request after {:.1}s",
                self.started.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "after its {} run",
                humantime::format_duration(self.config.duration)
            )
        };

        // 2. Stop the producer and wait for its summary.
        self.enter(Phase::StoppingProducer);
        self.children[producer].terminate();
        let stopped = self
            .run_until(Instant::now() + PRODUCER_GRACE, |d| {
                d.children[producer].finished()
            })
            .await?;
        if !stopped {
            self.warn(format!(
                "the producer did not stop within {PRODUCER_GRACE:?} of SIGTERM: killed"
            ));
            self.children[producer].kill();
            self.run_until(Instant::now() + KILL_WAIT, |d| {
                d.children[producer].finished()
            })
            .await?;
        }

        // 3. Drain.
        self.enter(Phase::Draining);
        if self.target == 0 {
            self.target = self.last_nonzero.max(1);
            self.console.note(&format!(
                "no consumer running: starting {} to drain the queue",
                self.target
            ));
            self.reconcile()?;
        }
        self.refresh_depth().await;
        if let Some(d) = self.depth.filter(|d| d.total() > 0) {
            self.console.note(&format!(
                "producer stopped; draining {} message(s) (at most {})",
                d.total(),
                humantime::format_duration(self.config.drain_timeout)
            ));
        }
        let drain_deadline = Instant::now() + self.config.drain_timeout;
        let drained = self
            .run_until(drain_deadline, |d| {
                d.shutdown.is_forced() || d.depth.is_some_and(|x| x.total() == 0)
            })
            .await?;
        if self.shutdown.is_forced() {
            self.warn(
                "drain skipped on request: messages still queued are left in the queue".into(),
            );
        } else if !drained {
            self.undrained = true;
            self.warn(format!(
                "the queue did not drain within --drain-timeout {}: messages still queued are left in it",
                humantime::format_duration(self.config.drain_timeout)
            ));
        }

        // 4. Stop the rest.
        self.enter(Phase::Stopping);
        self.stop_all(STOP_GRACE).await?;
        Ok(reason)
    }

    /// Moves to `phase`, with a status line (and JSON line) at the next step rather than up to a second
    /// later: after a Ctrl-C the line went on saying "running" while the stop had begun.
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.next_progress = Instant::now();
    }

    /// The event loop: runs until `done` holds (returns true) or `deadline` passes (returns false).
    ///
    /// # Errors
    /// When a child fails (see [`Demo::step`]).
    async fn run_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<bool> {
        let mut step = tokio::time::interval(STEP);
        step.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if done(self) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.on_event(event),
                key = keys::next(&mut self.keys) => self.on_key(key)?,
                _ = step.tick() => self.step().await?,
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// One step: reap children (failing on an unexpected exit), show progress when due, apply the schedule.
    async fn step(&mut self) -> anyhow::Result<()> {
        self.reap()?;
        if self.phase == Phase::Draining {
            self.refresh_depth().await;
        }
        // Progress before the schedule, so that a line due at the same moment as a step shows the state
        // just before it: what ran during the second that ends there.
        if Instant::now() >= self.next_progress {
            if self.phase != Phase::Draining {
                self.refresh_depth().await;
            }
            let figures = self.figures();
            self.console.tick(&figures, self.started);
            // Without the autoscaler (which samples at its decisions), the series takes one sample a second,
            // until the final stop (as the autoscaler's does), which takes every consumer away.
            if self.config.autoscale.is_none()
                && self.config.scorecard_dir.is_some()
                && self.phase != Phase::Stopping
            {
                self.record(&figures);
            }
            self.next_progress += PROGRESS;
            // Never a burst of catch-up lines after a stall.
            if self.next_progress < Instant::now() {
                self.next_progress = Instant::now() + PROGRESS;
            }
        }
        if self.phase == Phase::Running {
            let elapsed = self.started.elapsed();
            let steps = &self.config.consumers.steps;
            while let Some(s) = steps.get(self.next_step).filter(|s| s.at <= elapsed) {
                self.set_target(s.count);
                self.recorder.manual(self.series_t(), s.count, "schedule");
                self.next_step += 1;
            }
        }
        if let Some(a) = self.config.autoscale.clone()
            && self.phase != Phase::Stopping
            && Instant::now() >= self.next_scale
        {
            self.autoscale(&a).await?;
        }
        if self.shutdown.is_forced() && self.phase == Phase::Stopping {
            for c in &mut self.children {
                c.hurry();
            }
        }
        self.reconcile()
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Stats(id, stats, line) => {
                if self
                    .children
                    .get(id)
                    .is_some_and(|c| c.role == Role::Producer)
                {
                    self.copy_producer_line(&line);
                }
                let Some(c) = self.children.get_mut(id) else {
                    return;
                };
                match *stats {
                    // A role or kind from a newer writer: nothing the demo reads.
                    Stats::Other(_) => {}
                    s if s.is_summary() => c.summary = Some(s),
                    s => c.latest = Some(s),
                }
            }
            Event::NotStats(id, line, why) => {
                if !self.not_json_reported.contains(&id) {
                    self.not_json_reported.push(id);
                    let role = self.children.get(id).map(|c| c.role.to_string());
                    self.warn(format!(
                        "{} wrote a stdout line that is not a stats line (ignored: {why}): {line:.80}",
                        role.unwrap_or_default()
                    ));
                }
            }
            Event::Closed(id) => {
                if let Some(c) = self.children.get_mut(id) {
                    c.stdout_closed = true;
                }
            }
        }
    }

    fn warn(&mut self, msg: String) {
        self.console.note(&format!("warning: {msg}"));
        self.warnings.push(msg);
    }

    async fn refresh_depth(&mut self) {
        match self.queue.depth().await {
            Ok(d) => {
                self.depth = Some(d);
                self.depth_error = None;
            }
            Err(e) => {
                self.depth = None;
                let e = e.to_string();
                if self.depth_error.as_ref() != Some(&e) {
                    self.warn(format!("cannot read the queue depth: {e}"));
                    self.depth_error = Some(e);
                }
            }
        }
    }
}
