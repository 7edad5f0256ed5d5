//! Delivery scenarios every backend must pass, written once: each backend's test file says how its producer
//! and consumer are started ([`Roles`]) and how to read its queue ([`Backend`]), and calls the scenario.
//!
//! Keeping one copy matters beyond tidiness: the SIGTERM contract (finish what fits in the drain, give the rest
//! back at once) is the same promise on SQLite, NSQ and Azure, so the same assertions must hold on each.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{
    Proc, command, eventually, ledger_entries, spawn_with_ledgers, stop_gracefully, tally, u,
};

mod backends;
mod outage;
mod poison;

pub use backends::{AMQP, AZURE, NATS, REDIS};
pub use outage::{Outage, OutageLoad, OutageOutcome};
pub use poison::{
    assert_counts_add_up, assert_slot_identity, audit, every_message_ends_as_poison,
    ledger_outcomes, save_stats,
};

/// How the delivery tests start one backend's producer and consumer: the flags they all share (a 200-byte
/// body, stats every 200 ms from the producer and every 100 ms from the consumer), plus what the backend adds.
#[derive(Clone, Copy)]
pub struct Roles {
    /// Sets or clears the backend's credentials in each process's environment (so that none leaks in from the
    /// developer's shell).
    pub env: fn(&mut Command) -> &mut Command,
    /// The producer's `--batch`.
    pub producer_batch: &'static str,
    /// Flags every consumer gets before the test's own (a test's flags may not repeat them: clap refuses a
    /// flag given twice).
    pub consumer_flags: &'static [&'static str],
}

/// A backend that needs nothing in the environment and no flags of its own.
pub const PLAIN: Roles = Roles {
    env: |cmd| cmd,
    producer_batch: "100",
    consumer_flags: &[],
};

impl Roles {
    /// A producer that sends `count` messages at `rate` msgs/s (0: as fast as the queue takes them).
    pub fn producer(&self, url: &str, count: u64, rate: u64) -> Command {
        let mut cmd = command("producer");
        cmd.args(["--queue", url, "--count", &count.to_string()])
            .args(["--rate", &rate.to_string(), "--batch", self.producer_batch])
            .args(["--size", "200", "--stats-interval", "200ms"]);
        (self.env)(&mut cmd);
        cmd
    }

    /// A consumer writing its ledger to `ledger`, with the test's `extra` flags.
    pub fn consumer(&self, url: &str, ledger: &Path, extra: &[&str]) -> Command {
        let mut cmd = command("consumer");
        cmd.args(["--queue", url, "--ledger"])
            .arg(ledger)
            .args(["--stats-interval", "100ms"])
            .args(self.consumer_flags)
            .args(extra);
        (self.env)(&mut cmd);
        cmd
    }

    /// `n` consumers, each with its own ledger in `dir` (see [`spawn_with_ledgers`]).
    pub fn consumers(&self, url: &str, dir: &Path, n: usize, extra: &[&str]) -> Vec<Proc> {
        spawn_with_ledgers(n, dir, |ledger| self.consumer(url, ledger, extra))
    }
}

/// How a scenario drives one backend: one queue, its processes, and its state as the backend itself reports it.
pub struct Backend<'a> {
    pub roles: Roles,
    pub url: String,
    /// The queue as the backend itself reports it: (visible, in flight); (0, 0) is empty, with nothing leased
    /// or waiting out a delay.
    pub state: Box<dyn Fn() -> (u64, u64) + 'a>,
    /// How soon a SIGTERMed consumer holding unfinished work must have exited (its releases are remote calls
    /// on some backends).
    pub release_within: Duration,
}

impl Backend<'_> {
    /// See [`Roles::producer`].
    pub fn producer(&self, count: u64, rate: u64) -> Command {
        self.roles.producer(&self.url, count, rate)
    }

    /// See [`Roles::consumer`].
    pub fn consumer(&self, ledger: &Path, extra: &[&str]) -> Command {
        self.roles.consumer(&self.url, ledger, extra)
    }

    /// See [`Roles::consumers`].
    pub fn consumers(&self, dir: &Path, n: usize, extra: &[&str]) -> Vec<Proc> {
        self.roles.consumers(&self.url, dir, n, extra)
    }

    fn produce(&self, count: u64) -> Proc {
        let mut p = Proc::spawn("producer", self.producer(count, 0));
        assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
        p
    }

    /// Waits (bounded) until the queue is empty by the backend's own count, then stops the consumers with
    /// SIGTERM and checks they exit 0.
    pub fn drain_and_stop(&self, consumers: &mut [Proc], limit: Duration) {
        let started = Instant::now();
        assert!(
            eventually(limit, || (self.state)() == (0, 0)),
            "the queue did not drain within {limit:?}: {:?}",
            (self.state)()
        );
        eprintln!("drained in {:?}", started.elapsed());
        stop_gracefully(consumers);
    }
}

/// A counter of the processes' summaries, summed.
pub fn sum(procs: &[Proc], field: &str) -> u64 {
    procs
        .iter()
        .map(|c| u(&c.summary().expect("summary line"), field))
        .sum()
}

/// SIGTERM with ten messages held under 500 ms of work and a 5 s drain: the consumer finishes them, releases
/// nothing, exits 0 well inside the drain, and leaves nothing in flight; a second consumer takes the rest, and
/// the ledgers hold all 30 exactly once.
pub fn sigterm_finishes_held_messages(b: &Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    b.produce(30);
    let ledger = dir.path().join("c0.ledger");
    let mut c = Proc::spawn(
        "consumer",
        b.consumer(
            &ledger,
            &[
                "--work",
                "sleep:500ms",
                "--max-in-flight",
                "10",
                "--drain-timeout",
                "5s",
            ],
        ),
    );
    c.wait_for_consumer_line(Duration::from_secs(10), |l| l.in_flight == 10);
    let signalled = Instant::now();
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(10)).success(), "{}", c.stderr());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exited within its drain timeout"
    );
    let s = c.consumer_summary().expect("summary written on SIGTERM");
    assert_eq!(
        s.released, 0,
        "the held work finished inside the drain timeout"
    );
    assert_eq!(s.acked, s.received);
    let rest = 30 - s.acked;
    assert!(
        eventually(Duration::from_secs(2), || (b.state)() == (rest, 0)),
        "nothing held by the stopped consumer: {:?}",
        (b.state)()
    );

    // A second consumer takes the rest: together they consumed all 30 exactly once.
    let mut second = Proc::spawn(
        "consumer2",
        b.consumer(&dir.path().join("c1.ledger"), &["--work", "none"]),
    );
    assert!(
        eventually(Duration::from_secs(20), || (b.state)() == (0, 0)),
        "the second consumer drained the queue: {:?}",
        (b.state)()
    );
    second.signal(libc::SIGTERM);
    assert!(second.wait(Duration::from_secs(10)).success());
    assert_eq!(tally(&ledger_entries(dir.path()), 30), (30, 0, 0, 0));
}

/// A consumer whose `--max-in-flight` is above its `--batch` works on `--max-in-flight` messages at once (a
/// push backend sizes its window from what the consumer may hold, not from one receive: AMQP's prefetch was
/// a batch, which capped the work at it); SIGTERM then finishes them all.
pub fn more_in_flight_than_a_batch(b: &Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    b.produce(120);
    let ledger = dir.path().join("c0.ledger");
    let mut c = Proc::spawn(
        "consumer",
        b.consumer(
            &ledger,
            &[
                "--work",
                "sleep:2s",
                "--max-in-flight",
                "60",
                "--batch",
                "20",
                "--drain-timeout",
                "10s",
            ],
        ),
    );
    c.wait_for_consumer_line(Duration::from_secs(15), |l| l.in_flight == 60);
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(15)).success(), "{}", c.stderr());
    let s = c.consumer_summary().expect("summary written on SIGTERM");
    assert_eq!((s.acked, s.released), (s.received, 0), "{s:?}");
    assert!(s.received >= 60, "{s:?}");
}

/// SIGTERM with five messages held under 60 s of work (and a 60 s lease) and a 300 ms drain: the consumer
/// exits 0 promptly, releases all five and acks none, and they are visible again at once, not after the lease.
pub fn sigterm_releases_what_it_cannot_finish(b: &Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    b.produce(5);
    let mut c = Proc::spawn(
        "consumer",
        b.consumer(
            &dir.path().join("c.ledger"),
            &[
                "--work",
                "sleep:60s",
                "--max-in-flight",
                "5",
                "--lease",
                "60s",
                "--drain-timeout",
                "300ms",
            ],
        ),
    );
    c.wait_for_consumer_line(Duration::from_secs(10), |l| l.in_flight == 5);
    assert_eq!((b.state)(), (0, 5), "all five are leased");
    let signalled = Instant::now();
    c.signal(libc::SIGTERM);
    assert!(c.wait(Duration::from_secs(5)).success(), "{}", c.stderr());
    assert!(
        signalled.elapsed() < b.release_within,
        "took {:?}",
        signalled.elapsed()
    );
    let s = c.consumer_summary().expect("summary written on SIGTERM");
    assert_eq!((s.released, s.acked), (5, 0));
    assert!(
        eventually(Duration::from_secs(1), || (b.state)() == (5, 0)),
        "released messages are visible at once, not after the lease: {:?}",
        (b.state)()
    );
}

/// The load of [`a_consumer_killed_midway_loses_nothing`], sized for each backend's speed.
pub struct KillLoad<'a> {
    pub count: u64,
    /// Producer msgs/s (0: unpaced), to keep a slow backend's backlog small.
    pub rate: u64,
    /// Consumer flags: work slow enough, and a lease short enough, that the victim holds many and they return
    /// soon.
    pub consumer_args: &'a [&'a str],
    /// How many acks the victim makes before it is killed (with messages in flight).
    pub acked_before_kill: u64,
    /// A duplicate can only come from the kill landing between a ledger write and its ack, so at most what
    /// the victim held; `None` where a slow backend's lease expiries can add more.
    pub duplicates_at_most: Option<u64>,
}

/// What the kill scenario saw, for a backend's own extra checks.
pub struct KillOutcome {
    pub sent: u64,
    pub redelivered: u64,
    pub duplicates: u64,
}

/// Three consumers share the queue; one is SIGKILLed midway with messages in flight. Every confirmed message
/// is consumed (lost 0, nothing unexpected), the survivors report the victim's messages as redelivered, and
/// the survivors stop cleanly once the queue is empty.
pub fn a_consumer_killed_midway_loses_nothing(b: &Backend, load: &KillLoad) -> KillOutcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut consumers = b.consumers(dir.path(), 3, load.consumer_args);
    let mut p = Proc::spawn("producer", b.producer(load.count, load.rate));
    let victim = consumers.remove(0);
    victim.wait_for_consumer_line(Duration::from_secs(30), |l| {
        l.acked > load.acked_before_kill && l.in_flight > 0
    });
    victim.signal(libc::SIGKILL);
    assert!(p.wait(Duration::from_secs(60)).success(), "{}", p.stderr());
    let sent = p.producer_summary().expect("producer summary").sent;
    assert!(
        eventually(Duration::from_secs(60), || (b.state)() == (0, 0)),
        "queue did not drain: {:?}",
        (b.state)()
    );
    stop_gracefully(&mut consumers);

    let (consumed, lost, duplicates, unexpected) = tally(&ledger_entries(dir.path()), sent);
    assert_eq!(
        (consumed, lost, unexpected),
        (sent, 0, 0),
        "duplicates: {duplicates}"
    );
    let redelivered: u64 = consumers
        .iter()
        .map(|c| c.consumer_summary().expect("consumer summary").redelivered)
        .sum();
    assert!(
        redelivered > 0,
        "the killed consumer's messages were delivered again and reported"
    );
    if let Some(most) = load.duplicates_at_most {
        assert!(duplicates <= most, "{duplicates} duplicates");
    }
    eprintln!("sent {sent}, redelivered {redelivered}, duplicates {duplicates}");
    KillOutcome {
        sent,
        redelivered,
        duplicates,
    }
}
