//! A run through an outage of the queue's server: the same checks on every backend whose server the tests can
//! stop and restart.

use std::time::Duration;

use super::Backend;
use crate::{Proc, ledger_entries, tally, u};

/// The load of an [`Outage`] run.
pub struct OutageLoad<'a> {
    pub consumers: usize,
    pub consumer_args: &'a [&'a str],
    /// Messages the producer sends, at `rate` msgs/s: paced so that production goes on through the outage.
    pub count: u64,
    pub rate: u64,
    /// The producer's `sent` past which [`Outage::start`] returns, for the caller to take the server down.
    pub outage_after: u64,
}

/// A run through an outage of the queue's server, in two halves around it: [`Outage::start`] starts the
/// consumers and a paced producer and returns once the producer is well under way; the caller stops or kills
/// the server and brings it back; [`Outage::finish`] checks that the outage cost errors, not messages.
///
/// Two halves rather than one call with a closure: the caller needs its server mutably for the outage, while
/// the backend's state reads it.
pub struct Outage {
    pub dir: tempfile::TempDir,
    pub consumers: Vec<Proc>,
    producer: Proc,
    count: u64,
    /// The producer's `sent` when the outage began.
    pub at_outage: u64,
}

/// What an [`Outage`] run saw, for a backend's own extra checks.
pub struct OutageOutcome {
    pub sent: u64,
    pub duplicates: u64,
}

impl Outage {
    pub fn start(b: &Backend, load: &OutageLoad) -> Outage {
        let dir = tempfile::tempdir().expect("temp dir");
        let consumers = b.consumers(dir.path(), load.consumers, load.consumer_args);
        let producer = Proc::spawn("producer", b.producer(load.count, load.rate));
        let at_outage = u(
            &producer.wait_for_line(Duration::from_secs(30), |v| {
                v["sent"].as_u64().unwrap_or(0) > load.outage_after
            }),
            "sent",
        );
        Outage {
            dir,
            consumers,
            producer,
            count: load.count,
            at_outage,
        }
    }

    /// With the server back: the producer sends everything and counted the outage as errors, the queue
    /// drains, the consumers stop cleanly, and every confirmed message is in the ledgers. A message whose
    /// confirmation was lost in the outage may be sent twice (a duplicate); none may be lost.
    pub fn finish(&mut self, b: &Backend) -> OutageOutcome {
        let p = &mut self.producer;
        assert!(p.wait(Duration::from_secs(90)).success(), "{}", p.stderr());
        let ps = p.summary().expect("producer summary");
        let sent = u(&ps, "sent");
        assert_eq!(sent, self.count);
        assert!(
            u(&ps, "errors") > 0,
            "the producer counted the outage: {ps}"
        );
        b.drain_and_stop(&mut self.consumers, Duration::from_secs(60));
        let (consumed, lost, duplicates, unexpected) =
            tally(&ledger_entries(self.dir.path()), sent);
        assert_eq!(
            (consumed, lost, unexpected),
            (sent, 0, 0),
            "duplicates {duplicates}"
        );
        eprintln!("through the outage: sent {sent}, duplicates {duplicates}");
        OutageOutcome { sent, duplicates }
    }
}
