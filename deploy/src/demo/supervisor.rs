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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use common::queue::{self, Depth, Queue};
use common::shutdown::Shutdown;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::MissedTickBehavior;

use super::Config;
use super::autoscale::{self, Autoscale, Policy};
use super::child::{Binaries, ChildProc, Event, Role, State};
use super::console::{Console, Figures, Phase};
use super::keys::{self, Key, Keys};
use super::report::{E2e, Files, Summary};
use super::schedule::MAX_CONSUMERS;
use crate::audit::{self, Audit};
use crate::scorecard::{self, Sample, Series};

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
    let bins = Binaries::locate(
        config.bin_dir.as_deref(),
        config.remainder_threads.is_some(),
    )?;
    let tmp = tempfile::Builder::new()
        .prefix("queue-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo")?;
    let dir = tmp.path().to_path_buf();
    for sub in ["ledgers", "logs"] {
        std::fs::create_dir(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let url = format!("sqlite:{}", dir.join("queue.db").display());
    // Opening it here creates the file before any child starts, and proves it works.
    let queue = queue::open(&url)
        .await
        .with_context(|| format!("cannot create the demo's queue {url:?}"))?;
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    let keys = Keys::start().context("cannot read keys from the terminal")?;
    let mut console = Console::new();
    let load = match &config.shape {
        Some(shape) => format!("shape {shape}"),
        None => format!("{} msgs/s", config.rate),
    };
    let consumers = match &config.autoscale {
        Some(a) => format!("autoscaled ({})", a.summary()),
        None => config.consumers.to_string(),
    };
    console.note(&format!(
        "demo: producer at {load} for {}, consumers {consumers} (work {}), {}; files in {}",
        humantime::format_duration(config.duration),
        config.work,
        match config.remainder_threads {
            Some(n) => format!("remainder with {n} thread(s)"),
            None => "no remainder".into(),
        },
        dir.display()
    ));
    if keys.is_some() {
        console.set_legend(keys::LEGEND);
    }
    let (events_tx, events_rx) = unbounded_channel();
    let launched = Instant::now();
    let mut demo = Demo {
        config: &config,
        bins,
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
        producer_started: launched,
        next_scale: launched,
        next_remainder: 1,
        policy: config.autoscale.as_ref().map(Autoscale::start),
        starting: Vec::new(),
        samples: Vec::new(),
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
    let failed = summary.is_err();
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
            s.emit(launched);
            let _ = s.write_report(&mut std::io::stderr().lock());
            if let Some(a) = &config.autoscale {
                write_scorecard(&config, a, &s, std::mem::take(&mut demo.samples))?;
            }
            Ok(s)
        }
        Err(e) => Err(anyhow!(
            "{e:#}\nthe demo's files, logs included, are kept in {}",
            dir.display()
        )),
    }
}

/// Grades the autoscaler's run and writes the series, the scorecard and the chart to --scorecard-dir.
fn write_scorecard(
    config: &Config,
    a: &Autoscale,
    s: &Summary,
    samples: Vec<Sample>,
) -> anyhow::Result<()> {
    let title = format!(
        "{}: local autoscaler, {}",
        config.scenario.as_deref().unwrap_or("demo"),
        a.summary()
    );
    let series = Series {
        title: Some(title.clone()),
        policy: Some(a.policy.name().into()),
        settings: Some(a.to_string()),
        target: a.target,
        band_low: a.band_low(),
        shape: config.shape.as_ref().map(ToString::to_string),
        changes_s: config
            .shape
            .as_ref()
            .map(|sh| sh.changes().iter().map(Duration::as_secs_f64).collect())
            .unwrap_or_else(|| vec![0.0]),
        consumed: s.audit.totals.consumed,
        lost: Some(s.lost()),
        samples,
    };
    let (card, out) = scorecard::write_all(&config.scorecard_dir, &series, &title)
        .context("cannot write the scorecard")?;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "scorecard ({}):", config.scorecard_dir.display());
    let _ = scorecard::table::write(&mut err, &card);
    let _ = writeln!(
        err,
        "  files  {}, {}, {}",
        out.series.display(),
        out.scorecard.display(),
        out.chart.display()
    );
    Ok(())
}

struct Demo<'a> {
    config: &'a Config,
    bins: Binaries,
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
    /// When the producer started: the load shape's zero, and the time series' origin.
    producer_started: Instant,
    /// When the autoscaler next decides.
    next_scale: Instant,
    /// The number the next remainder gets.
    next_remainder: usize,
    /// The autoscaler's policy, with its state (with --autoscale).
    policy: Option<Box<dyn Policy>>,
    /// When each consumer asked for but not yet started becomes ready (`start-delay`), earliest first.
    starting: Vec<Instant>,
    /// The time series the scorecard grades, one sample per progress tick (with --autoscale).
    samples: Vec<Sample>,
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
        self.phase = Phase::StoppingProducer;
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
        self.phase = Phase::Draining;
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
            self.warn("drain skipped on request: messages still queued count as lost".into());
        } else if !drained {
            self.warn(format!(
                "the queue did not drain within --drain-timeout {}: messages still queued count as lost",
                humantime::format_duration(self.config.drain_timeout)
            ));
        }

        // 4. Stop the rest.
        self.phase = Phase::Stopping;
        self.stop_all(STOP_GRACE).await?;
        Ok(reason)
    }

    /// After a failure: stops every child quickly, reporting nothing more.
    async fn abort(&mut self) {
        self.phase = Phase::Stopping;
        // Errors here would only repeat the failure being reported.
        let _ = self.stop_all(ABORT_GRACE).await;
    }

    /// SIGTERM to every running child, SIGKILL to those still running after `grace`.
    async fn stop_all(&mut self, grace: Duration) -> anyhow::Result<()> {
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
                self.next_step += 1;
            }
        }
        if let Some(a) = self.config.autoscale.clone() {
            if self.phase != Phase::Stopping && Instant::now() >= self.next_scale {
                self.autoscale(&a).await?;
            }
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
            Event::Stats(id, v) => {
                let Some(c) = self.children.get_mut(id) else {
                    return;
                };
                match v["kind"].as_str() {
                    Some("summary") => c.summary = Some(v),
                    Some("interval") => c.latest = Some(v),
                    _ => {}
                }
            }
            Event::NotJson(id, line) => {
                if !self.not_json_reported.contains(&id) {
                    self.not_json_reported.push(id);
                    let role = self.children.get(id).map(|c| c.role.to_string());
                    self.warn(format!(
                        "{} wrote a stdout line that is not JSON (ignored): {line:.80}",
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

    fn on_key(&mut self, key: Key) -> anyhow::Result<()> {
        match key {
            Key::AddConsumer if self.target < MAX_CONSUMERS => self.set_target(self.target + 1),
            Key::AddConsumer => self.console.note(&format!(
                "already {MAX_CONSUMERS} consumers: that is the most"
            )),
            Key::RemoveConsumer => self.set_target(self.target.saturating_sub(1)),
            // The first stop request stops gracefully; the second hurries (skips the drain).
            Key::Stop if self.shutdown.is_requested() => {
                self.console.note("stopping at once: skipping the drain");
                self.shutdown.force();
            }
            Key::Stop => self.shutdown.trigger(),
        }
        self.reconcile()
    }

    /// One decision of the autoscaler: read the depth, move the consumer target one step (see [`Autoscale`]),
    /// apply it, and record a sample of the time series (the depth it read, the consumers it left running).
    /// While the demo drains, at least one consumer stays while messages remain, or they never would be.
    ///
    /// # Errors
    /// When a consumer or remainder cannot be started.
    async fn autoscale(&mut self, a: &Autoscale) -> anyhow::Result<()> {
        self.next_scale += a.interval;
        if self.next_scale < Instant::now() {
            self.next_scale = Instant::now() + a.interval;
        }
        self.refresh_depth().await;
        // An unreadable depth: no decision rather than a guess.
        let Some(depth) = self.depth else {
            let figures = self.figures();
            self.record(&figures);
            return Ok(());
        };
        let floor = usize::from(self.phase == Phase::Draining && depth.total() > 0);
        let now = Instant::now().saturating_duration_since(self.started);
        let wanted = match self.policy.as_mut() {
            Some(p) => p.decide(now, depth, self.target),
            None => self.target,
        };
        let next = autoscale::with_floor(wanted, floor, a.max);
        if next != self.target {
            self.console.note(&format!(
                "autoscaler: depth {} (target {}): {} → {next} consumer(s)",
                depth.total(),
                a.target,
                self.target
            ));
            self.set_target(next);
            self.reconcile()?;
        }
        let figures = self.figures();
        self.record(&figures);
        Ok(())
    }

    /// Appends one sample of the time series: the depth just read, the processes running now, the producer's
    /// and the consumers' latest figures.
    fn record(&mut self, f: &Figures) {
        let running = |want: fn(&Role) -> bool| {
            self.children
                .iter()
                .filter(|c| want(&c.role) && c.is_running())
                .count()
        };
        let consumers = running(|r| matches!(r, Role::Consumer(_)));
        let remainders = running(|r| matches!(r, Role::Remainder(_)));
        // Every consumer's busy time so far, the finished ones' included (their summary has the final figure).
        let busy: Vec<f64> = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Consumer(_)))
            .filter_map(|c| c.summary.as_ref().or(c.latest.as_ref()))
            .filter_map(|v| v["busy_s"].as_f64())
            .collect();
        self.samples.push(Sample {
            t: (self.producer_started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            depth: f.depth.map(|d| d.total()),
            consumers,
            remainders,
            produce_rate: f.produce_rate,
            busy_s: (!busy.is_empty()).then(|| busy.iter().sum()),
        });
    }

    /// Sets how many consumers should run (from the schedule or a key).
    fn set_target(&mut self, n: usize) {
        self.target = n;
        if n > 0 {
            self.last_nonzero = n;
        }
    }

    /// Starts or stops consumers until as many run as the target says. Consumers are stopped newest first.
    /// Once the final stop has begun, nothing is started.
    fn reconcile(&mut self) -> anyhow::Result<()> {
        if self.phase == Phase::Stopping {
            return Ok(());
        }
        let running: Vec<usize> = self
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.role, Role::Consumer(_)) && c.is_running())
            .map(|(i, _)| i)
            .collect();
        for &i in running.iter().skip(self.target).rev() {
            let c = &mut self.children[i];
            c.terminate();
            let msg = format!("{} stopping (SIGTERM: it drains and exits)", c.role);
            self.console.note(&msg);
        }
        // Consumers still starting count toward the target; the newest are the first given up.
        self.starting
            .truncate(self.target.saturating_sub(running.len()));
        let delay = self
            .config
            .autoscale
            .as_ref()
            .map_or(Duration::ZERO, |a| a.start_delay);
        let now = Instant::now();
        for _ in running.len() + self.starting.len()..self.target {
            self.starting.push(now + delay);
        }
        while self.starting.first().is_some_and(|&ready| ready <= now) {
            self.starting.remove(0);
            self.spawn_consumer()?;
        }
        if let (Some(a), Some(_)) = (&self.config.autoscale, self.config.remainder_threads) {
            let want = a.remainders(self.target);
            let remainders: Vec<usize> = self
                .children
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c.role, Role::Remainder(_)) && c.is_running())
                .map(|(i, _)| i)
                .collect();
            for &i in remainders.iter().skip(want).rev() {
                self.children[i].terminate();
            }
            for _ in remainders.len()..want {
                self.spawn_remainder(1)?;
            }
        }
        let now_running = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Consumer(_)) && c.is_running())
            .count();
        self.consumers_max = self.consumers_max.max(now_running);
        Ok(())
    }

    fn spawn_consumer(&mut self) -> anyhow::Result<()> {
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
        // The first consumers start silently with the demo; later ones are news.
        if self.launched_children {
            let msg = format!(
                "{} started (pid {})",
                self.children[i].role, self.children[i].pid
            );
            self.console.note(&msg);
        }
        Ok(())
    }

    fn spawn_remainder(&mut self, threads: usize) -> anyhow::Result<()> {
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
    fn spawn(
        &mut self,
        role: Role,
        args: &[String],
        ledger: Option<PathBuf>,
    ) -> anyhow::Result<usize> {
        let program = match role {
            Role::Producer => &self.bins.producer,
            Role::Consumer(_) => &self.bins.consumer,
            Role::Remainder(_) => &self.bins.remainder,
        };
        let id = self.children.len();
        let log = self
            .dir
            .join("logs")
            .join(format!("{}.log", role.file_stem()));
        let child = ChildProc::spawn(id, role, program, args, log, ledger, self.events_tx.clone())?;
        self.children.push(child);
        Ok(id)
    }

    /// Reaps exited children. A child that exits without being asked to (but the producer, when its run is
    /// over), or fails while being stopped before
    /// the final stop, is a failure of the demo. During the final stop a failure is only a warning: the run is
    /// over, and the audit says whether it mattered.
    fn reap(&mut self) -> anyhow::Result<()> {
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

    fn warn(&mut self, msg: String) {
        self.console.note(&format!("warning: {msg}"));
        self.warnings.push(msg);
    }

    async fn refresh_depth(&mut self) {
        self.depth = self.queue.depth().await.ok();
    }

    /// The figures of a progress tick, from the children's latest interval lines.
    fn figures(&self) -> Figures {
        let live = |c: &&ChildProc| !c.has_exited();
        let latest = |c: &ChildProc, field: &str| c.latest.as_ref().map(|v| v[field].clone());
        let f64_of = |v: Option<Value>| v.and_then(|v| v.as_f64()).unwrap_or(0.0);
        let consumers = || {
            self.children
                .iter()
                .filter(live)
                .filter(|c| matches!(c.role, Role::Consumer(_)))
        };
        let of_role = |role: Role| self.children.iter().filter(live).find(|c| c.role == role);
        Figures {
            elapsed: self.started.elapsed(),
            phase: self.phase,
            depth: self.depth,
            produce_rate: of_role(Role::Producer).map_or(0.0, |c| f64_of(latest(c, "rate"))),
            // A fold from 0.0, not sum(): the sum of no f64 is -0.0, which would print as "-0".
            consume_rate: (consumers()
                .map(|c| f64_of(latest(c, "rate")))
                .fold(0.0, |a, b| a + b)
                * 10.0)
                .round()
                / 10.0,
            consumers: consumers().filter(|c| c.is_running()).count(),
            e2e_p99_us: consumers()
                .filter_map(|c| latest(c, "e2e_p99_us").and_then(|v| v.as_u64()))
                .max()
                .unwrap_or(0),
            remainder_units_per_s: self.config.remainder_threads.map(|_| {
                self.children
                    .iter()
                    .filter(live)
                    .filter(|c| matches!(c.role, Role::Remainder(_)))
                    .map(|c| f64_of(latest(c, "units_per_s")))
                    .fold(0.0, |a, b| a + b)
            }),
        }
    }

    /// Phase 5: the audit and the figures of the report.
    async fn summarise(&mut self, stop_reason: String) -> anyhow::Result<Summary> {
        self.refresh_depth().await;
        let producer = self
            .children
            .iter()
            .find(|c| c.role == Role::Producer)
            .context("the demo has no producer")?;
        let lines = [&producer.latest, &producer.summary]
            .into_iter()
            .flatten()
            .map(Value::to_string);
        let (records, warnings) = audit::records_from_lines("producer", lines)
            .context("cannot audit: the producer reported nothing")?;
        let mut audit = Audit::new(records);
        for c in &self.children {
            // A consumer killed before it opened its ledger acked nothing: no file is right.
            if let Some(ledger) = c.ledger.as_deref().filter(|p| Path::exists(p)) {
                audit.add_ledger(ledger)?;
            }
        }
        let mut report = audit.report();
        report.warnings.splice(0..0, warnings);
        let consumers: Vec<&ChildProc> = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Consumer(_)))
            .collect();
        // Over every remainder: units add up; units per second are per remainder, so they add up too only
        // while they ran together — the total over the run's length is the honest figure.
        let summaries: Vec<&Value> = self
            .children
            .iter()
            .filter(|c| matches!(c.role, Role::Remainder(_)))
            .filter_map(|c| c.summary.as_ref())
            .collect();
        let remainder = match summaries.as_slice() {
            [] => None,
            [one] => Some((
                one["units"].as_u64().unwrap_or(0),
                one["units_per_s"].as_f64().unwrap_or(0.0),
            )),
            many => {
                let units: u64 = many.iter().map(|s| s["units"].as_u64().unwrap_or(0)).sum();
                Some((
                    units,
                    units as f64 / self.started.elapsed().as_secs_f64().max(1e-3),
                ))
            }
        };
        Ok(Summary {
            audit: report,
            e2e: E2e::merge(consumers.iter().filter_map(|c| c.summary.as_ref())),
            consumers_without_summary: consumers.iter().filter(|c| c.summary.is_none()).count(),
            duration: self.launched.elapsed(),
            consumers_max: self.consumers_max,
            left_in_queue: self.depth.map(|d| d.total()),
            stop_reason,
            remainder,
            files: Files::Removed,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}
