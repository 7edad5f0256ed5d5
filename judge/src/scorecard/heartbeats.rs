//! Counting consumers from their heartbeats (`scorecard watch --consumers telemetry`): the one consumer count
//! that works on every backend and every platform, because the consumers themselves send it, on the run's
//! telemetry channel ([`workload::telemetry`]), beside the work queue the engine reads.
//!
//! A reader takes every heartbeat off `QUEUE-heartbeat` as it arrives (and acks it: heartbeats are for
//! watchers only, so two watches of one run would split them; run one). A consumer counts from its first beat
//! until it says goodbye (a graceful exit) or misses two beats: no beat for two intervals and a half, the half
//! for the channel's delivery delay. So a consumer that starts or stops gracefully is counted right within one
//! interval, and one that is killed is counted for up to two and a half more (`--stats-interval` of the
//! consumer; keep it at most half the watch's `--interval` for a tight count).
//!
//! A beat's age is taken from its send time (`at_us`, the sender's clock), so that a backlog of old beats
//! found when the watch starts does not count consumers long gone: clocks are assumed in step to well under
//! an interval (NTP), as on any cluster.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use queues::{ErrorKind, Queue, QueueError, QueueUrl};
use workload::clock::unix_micros;
use workload::telemetry::{self, Record};

use super::sources::{ConsumerSource, SourceError};

/// Heartbeats taken per receive, and how long a receive waits for the first.
const BATCH: usize = 256;
const WAIT: Duration = Duration::from_millis(200);
/// A failed receive is retried after this long, and so is opening a channel that is not there yet.
const RETRY: Duration = Duration::from_millis(500);
/// How long a watch waits for its first heartbeat before it warns that none came.
pub const SILENCE_WARNING_AFTER: Duration = Duration::from_secs(10);

/// What `--consumers` names: a place that is polled, or the consumers' own heartbeats.
#[derive(Clone, PartialEq, Eq)]
pub enum CountFrom {
    Heartbeats,
    Polled(ConsumerSource),
}

impl FromStr for CountFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "telemetry" {
            return Ok(CountFrom::Heartbeats);
        }
        s.parse().map(CountFrom::Polled).map_err(|e| {
            format!(
                "{e}, or telemetry (the consumers' heartbeats on the queue's telemetry channel)"
            )
        })
    }
}

impl fmt::Display for CountFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountFrom::Heartbeats => f.write_str("telemetry"),
            CountFrom::Polled(s) => s.fmt(f),
        }
    }
}

impl fmt::Debug for CountFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountFrom({self})")
    }
}

/// What the reader knows of one consumer.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// When its last beat was sent, on this process's clock.
    last: Instant,
    interval: Duration,
    /// It said goodbye: gone for good (a beat delivered after the goodbye does not bring it back).
    gone: bool,
}

impl Seen {
    fn alive(&self, now: Instant) -> bool {
        !self.gone && now.saturating_duration_since(self.last) <= self.interval * 5 / 2
    }
}

#[derive(Default)]
struct State {
    consumers: HashMap<String, Seen>,
    /// The last receive's error, until a receive succeeds again: the count is not current meanwhile.
    failing: Option<String>,
    /// Bodies on the heartbeat queue that were not heartbeats (counted, skipped, acked).
    skipped: u64,
}

/// The consumers counted from their heartbeats, kept current by a reader task (stopped on drop).
pub struct Heartbeats {
    shown: String,
    state: Arc<Mutex<State>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Heartbeats {
    /// Starts reading the heartbeats of the consumers of `work` (its `-heartbeat` sibling). A sibling that is
    /// not there yet is waited for, not created: the consumers make it when they start with telemetry on, and a
    /// watch only reads (an embedded queue's file made by a watch would be left behind by it). Until a first
    /// beat arrives the count is 0, and after [`SILENCE_WARNING_AFTER`] without one a warning says so.
    ///
    /// # Errors
    /// When the sibling cannot be named, or opening it fails for another reason than its absence.
    pub async fn start(work: &QueueUrl) -> Result<Heartbeats, QueueError> {
        let url = work.sibling(telemetry::HEARTBEAT_SUFFIX)?;
        let queue = match url.open_existing().await {
            Ok(queue) => Some(queue),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let state = Arc::new(Mutex::new(State::default()));
        let shown = url.to_string();
        let reader = tokio::spawn(read(url, queue, state.clone()));
        Ok(Heartbeats {
            shown,
            state,
            reader,
        })
    }

    /// The consumers alive now.
    ///
    /// # Errors
    /// While the heartbeat queue cannot be read (the count would be stale).
    pub fn count(&self) -> Result<usize, SourceError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(error) = &state.failing {
            return Err(SourceError::Heartbeats {
                queue: self.shown.clone(),
                error: error.clone(),
            });
        }
        let now = Instant::now();
        Ok(state.consumers.values().filter(|s| s.alive(now)).count())
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Warns once when no heartbeat came in the watch's first [`SILENCE_WARNING_AFTER`]. Silence after beats is
/// not warned about: consumers that said goodbye, or an engine that scaled to zero, are silent too.
struct Silence {
    since: Instant,
    heard: bool,
    warned: bool,
}

impl Silence {
    fn check(&mut self, channel: &QueueUrl, exists: bool) {
        if self.heard || self.warned || self.since.elapsed() < SILENCE_WARNING_AFTER {
            return;
        }
        self.warned = true;
        tracing::warn!(
            "no heartbeat on {channel} in {} s{}: are the consumers running with --telemetry on, on this \
             queue? Counting 0 consumers until one arrives",
            SILENCE_WARNING_AFTER.as_secs(),
            if exists {
                ""
            } else {
                " (no consumer has made the channel yet)"
            },
        );
    }
}

/// Opens the heartbeat channel once it exists, checking for it every [`RETRY`].
async fn wait_for_channel(
    url: &QueueUrl,
    state: &Mutex<State>,
    silence: &mut Silence,
) -> Arc<dyn Queue> {
    loop {
        silence.check(url, false);
        tokio::time::sleep(RETRY).await;
        match url.open_existing().await {
            Ok(queue) => {
                state.lock().unwrap_or_else(PoisonError::into_inner).failing = None;
                return queue;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the heartbeat channel");
                state.lock().unwrap_or_else(PoisonError::into_inner).failing = Some(e.to_string());
            }
        }
    }
}

async fn read(url: QueueUrl, queue: Option<Arc<dyn Queue>>, state: Arc<Mutex<State>>) {
    let mut silence = Silence {
        since: Instant::now(),
        heard: false,
        warned: false,
    };
    let queue = match queue {
        Some(queue) => queue,
        None => wait_for_channel(&url, &state, &mut silence).await,
    };
    let mut exists = true;
    loop {
        silence.check(&url, exists);
        let got = match queue.receive(BATCH, Duration::from_secs(30), WAIT).await {
            Ok(got) => {
                exists = true;
                got
            }
            // Backends that connect on first use find out only now that the consumers have not made the
            // channel yet: no consumer has beaten, so the count of 0 is current.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                exists = false;
                state.lock().unwrap_or_else(PoisonError::into_inner).failing = None;
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read heartbeats");
                state.lock().unwrap_or_else(PoisonError::into_inner).failing = Some(e.to_string());
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let (now, now_us) = (Instant::now(), unix_micros());
        let mut receipts = Vec::with_capacity(got.len());
        {
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            s.failing = None;
            for d in got {
                silence.heard |= note(&mut s, &d.body, now, now_us);
                receipts.push(d.receipt);
            }
        }
        // An ack that fails only means these beats come again, and are noted again: harmless.
        if !receipts.is_empty()
            && let Err(e) = queue.ack(receipts).await
        {
            tracing::debug!(error = %e, "cannot ack heartbeats");
        }
    }
}

/// Notes one body taken off the heartbeat queue at `now` (`now_us` on the wall clock); returns whether it was
/// a heartbeat.
fn note(s: &mut State, body: &[u8], now: Instant, now_us: u64) -> bool {
    let beat = match Record::decode(body) {
        Ok(Record::Heartbeat(beat)) => beat,
        other => {
            s.skipped += 1;
            if s.skipped <= 3 {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "a record that belongs on the -telemetry queue".to_string(),
                };
                tracing::warn!("skipped a message on the heartbeat queue: {why}");
            }
            return false;
        }
    };
    let interval = Duration::from_millis(beat.interval_ms.max(1));
    // Sent this long ago: beats found in a backlog are dated when they were sent, not when read.
    let age = Duration::from_micros(now_us.saturating_sub(beat.at_us));
    // Older than this process's clock can tell (older than the machine's uptime): long gone.
    let Some(last) = now.checked_sub(age) else {
        return true;
    };
    let gone = beat.goodbye || !beat.alive;
    let seen = s.consumers.entry(beat.consumer).or_insert(Seen {
        last,
        interval,
        gone,
    });
    seen.gone |= gone;
    seen.interval = interval;
    // Beats can arrive out of order (a lease that ran out, several connections): keep the newest.
    if last > seen.last {
        seen.last = last;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload::telemetry::Heartbeat;

    fn beat(consumer: &str, at_us: u64, goodbye: bool) -> Vec<u8> {
        Record::Heartbeat(Heartbeat {
            consumer: consumer.into(),
            at_us,
            interval_ms: 1000,
            alive: !goodbye,
            slots: 4,
            busy: 1,
            goodbye,
        })
        .encode()
    }

    fn alive(s: &State, at: Instant) -> usize {
        s.consumers.values().filter(|c| c.alive(at)).count()
    }

    #[test]
    fn consumers_count_until_goodbye_or_two_missed_beats() {
        let mut s = State::default();
        let now = Instant::now();
        let now_us = 1_000_000_000;
        note(&mut s, &beat("a", now_us, false), now, now_us);
        note(&mut s, &beat("b", now_us - 500_000, false), now, now_us);
        assert_eq!(alive(&s, now), 2);
        // Two beats and a half later (1 s interval), both are still counted; b, half a second older, is not
        // a moment after.
        assert_eq!(alive(&s, now + Duration::from_millis(2000)), 2);
        assert_eq!(alive(&s, now + Duration::from_millis(2100)), 1);
        assert_eq!(alive(&s, now + Duration::from_millis(2600)), 0);
        // A goodbye removes at once, and a late beat of the same consumer does not bring it back.
        note(&mut s, &beat("a", now_us + 10, true), now, now_us);
        assert_eq!(alive(&s, now), 1);
        note(&mut s, &beat("a", now_us + 20, false), now, now_us);
        assert_eq!(alive(&s, now), 1);
    }

    #[test]
    fn a_backlog_of_old_beats_counts_nobody_and_bad_bodies_are_skipped() {
        let mut s = State::default();
        let now = Instant::now();
        let now_us = 5_000_000_000;
        // Sent a minute ago, read now: gone long since.
        note(
            &mut s,
            &beat("old", now_us - 60_000_000, false),
            now,
            now_us,
        );
        // A clock ahead of ours counts as just sent.
        note(
            &mut s,
            &beat("ahead", now_us + 3_000_000, false),
            now,
            now_us,
        );
        assert_eq!(alive(&s, now), 1);
        // An older beat delivered after a newer one does not age the consumer.
        note(
            &mut s,
            &beat("ahead", now_us - 9_000_000, false),
            now,
            now_us,
        );
        assert_eq!(alive(&s, now), 1);
        let ledger = br#"{"t":"ledger","consumer":"c","entries":[]}"#;
        for bad in [&b"not json"[..], b"{}", ledger] {
            note(&mut s, bad, now, now_us);
        }
        assert_eq!(s.skipped, 3);
        assert_eq!(alive(&s, now), 1);
    }

    #[test]
    fn telemetry_or_a_polled_source() {
        assert_eq!(
            "telemetry".parse::<CountFrom>().unwrap(),
            CountFrom::Heartbeats
        );
        assert!(matches!(
            "nsqd:http://h:4151/t/c".parse::<CountFrom>().unwrap(),
            CountFrom::Polled(ConsumerSource::Nsqd { .. })
        ));
        let e = "telemetri".parse::<CountFrom>().unwrap_err();
        assert!(e.contains("or telemetry"), "{e}");
        assert_eq!(CountFrom::Heartbeats.to_string(), "telemetry");
    }
}
