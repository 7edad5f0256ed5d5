//! Changing the consumer count: the keys, the autoscaler's decisions, and the reconciliation that starts and
//! stops consumers (and, under the autoscaler, remainders in the spare slots) until the target runs.

use std::time::{Duration, Instant};

use super::Demo;
use crate::demo::autoscale::{self, Autoscale};
use crate::demo::child::Role;
use crate::demo::console::Phase;
use crate::demo::keys::Key;
use crate::demo::schedule::MAX_CONSUMERS;

impl Demo<'_> {
    pub(super) fn on_key(&mut self, key: Key) -> anyhow::Result<()> {
        match key {
            Key::AddConsumer if self.target < MAX_CONSUMERS => {
                self.set_target(self.target + 1);
                self.by_hand("key +");
            }
            Key::AddConsumer => self.console.note(&format!(
                "already {MAX_CONSUMERS} consumers: that is the most"
            )),
            Key::RemoveConsumer if self.target > 0 => {
                self.set_target(self.target - 1);
                self.by_hand("key -");
            }
            Key::RemoveConsumer => self
                .console
                .note("no consumer to remove: messages wait in the queue until + adds one"),
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
    pub(super) async fn autoscale(&mut self, a: &Autoscale) -> anyhow::Result<()> {
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
            // One short line per change: the processes it starts and stops are not announced one by one.
            self.console.note(&format!(
                "{:>6.1}s autoscaler: depth {} (target {}), consumers {} → {next}",
                self.started.elapsed().as_secs_f64(),
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

    /// Sets how many consumers should run (from the schedule or a key).
    pub(super) fn set_target(&mut self, n: usize) {
        self.target = n;
        if n > 0 {
            self.last_nonzero = n;
        }
    }

    /// Starts or stops consumers until as many run as the target says. Consumers are stopped newest first.
    /// Once the final stop has begun, nothing is started.
    pub(super) fn reconcile(&mut self) -> anyhow::Result<()> {
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
            // Under the autoscaler its decision line says it all.
            if self.config.autoscale.is_none() {
                let msg = format!("{} stopping (SIGTERM: it drains and exits)", c.role);
                self.console.note(&msg);
            }
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
}
