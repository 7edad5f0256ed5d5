//! Acks sent in the background, where the queue has a thread of its own to send them (SQLite's claiming
//! thread, [`queues::Queue::ack_in_background`]).
//!
//! Why: the embedded queue's write lock is its bottleneck. A turn that sends its acks and waits for their
//! commit before taking in the messages that came with them leaves the lock idle while it takes them in
//! (decoding, the ledger), ~90 µs per batch of 100. Here a turn queues its acks for the thread, whose next
//! transaction sends them and claims more, and takes in the messages already claimed meanwhile; the answers
//! are settled as they come, oldest first.
//!
//! What it keeps: an acked message stays held (in `held`, counted in flight) until its answer, so every
//! count is what it would be with the answer awaited; the file ledger is written before the ack is queued,
//! as before; a failed answer puts its messages back in `to_ack` (and their records back, with joint
//! telemetry), to be sent again; the drain waits for every answer (stopping deliveries does).

use std::time::Duration;

use queues::{AckTicket, Background, QueueError};
use tokio::sync::oneshot::error::TryRecvError;

use crate::consume::{Consumer, Joint};
use crate::error::Error;

/// Acks in flight at most: one being committed while the next waits its turn, so that the thread starts the
/// next transaction as soon as one commits.
const IN_FLIGHT: usize = 2;

/// Acks queued for the thread.
pub(crate) struct Acking {
    keys: Vec<u64>,
    answer: AckTicket,
    /// Joint telemetry: the records that went with them.
    joint: Option<(
        Vec<(workload::ledger::Entry, workload::ledger::Outcome)>,
        FailedHook,
    )>,
}

type FailedHook = std::sync::Arc<std::sync::Mutex<Option<workload::ledger::LedgerError>>>;

impl Consumer {
    /// Messages whose acks are in flight.
    pub(crate) fn acks_in_flight(&self) -> usize {
        self.acking.iter().map(|a| a.keys.len()).sum()
    }

    /// One turn of the loop: the acks of `to_ack` and a receive of up to `max`, waiting up to `wait` when
    /// nothing is held. In the background where the queue can; else in one call ([`Consumer::send_acks`]).
    pub(crate) async fn turn(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Result<usize, QueueError>, Error> {
        if !self.background {
            return self.send_acks(max, wait).await;
        }
        if let Err(e) = self.settle_answers(false).await? {
            return Ok(Err(e));
        }
        if !self.to_ack.is_empty() && self.acking.len() < IN_FLIGHT && !self.ack_in_background() {
            // This queue has no thread for them: every turn from now on goes in one call.
            self.background = false;
            return self.send_acks(max, wait).await;
        }
        let wait = if self.acking.is_empty() {
            wait
        } else {
            Duration::ZERO
        };
        let got = match self.queue.receive(max, self.config.lease, wait).await {
            Ok(got) => got,
            Err(e) => return Ok(Err(e)),
        };
        let n = got.len();
        for d in got {
            self.accept(d);
        }
        if n == 0 && !self.acking.is_empty() {
            // Nothing to take in meanwhile: the oldest answer is what this turn waits for.
            if let Err(e) = self.settle_answers(true).await? {
                return Ok(Err(e));
            }
        }
        Ok(Ok(n))
    }

    /// Queues the acks of `to_ack` for the queue's thread; false (nothing taken, `to_ack` as it was) when the
    /// queue declines.
    fn ack_in_background(&mut self) -> bool {
        let receipts = self
            .to_ack
            .iter()
            .map(|k| self.held[k].receipt.clone())
            .collect();
        let joint = self.take_recorded();
        let (records, joint) = match joint {
            Some(Joint {
                records,
                recorded,
                failed,
            }) => (Some(records), Some((recorded, failed))),
            None => (None, None),
        };
        match self.queue.ack_in_background(receipts, records) {
            Background::Queued(answer) => {
                let keys = std::mem::take(&mut self.to_ack);
                self.acking.push_back(Acking {
                    keys,
                    answer,
                    joint,
                });
                true
            }
            Background::Declined(..) => {
                if let Some((recorded, _)) = joint {
                    // Their file entries were handed to the declined hook, which never ran.
                    self.records_again(recorded);
                }
                false
            }
        }
    }

    /// Settles the answers that came, oldest first; with `block`, waits for the oldest first. A failed one
    /// puts its messages back in `to_ack` and is returned (the later ones are settled by later turns). The
    /// outer error is the file ledger's, which ends the run.
    pub(crate) async fn settle_answers(
        &mut self,
        mut block: bool,
    ) -> Result<Result<(), QueueError>, Error> {
        while let Some(front) = self.acking.front_mut() {
            let answer = if block {
                block = false;
                (&mut front.answer)
                    .await
                    .unwrap_or_else(|_| Err(QueueError::interrupted("the queue's thread ended")))
            } else {
                match front.answer.try_recv() {
                    Ok(answer) => answer,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => {
                        Err(QueueError::interrupted("the queue's thread ended"))
                    }
                }
            };
            let Some(Acking { keys, joint, .. }) = self.acking.pop_front() else {
                break;
            };
            if let Some((_, failed)) = &joint {
                self.ledger_hook_failed(failed)?;
            }
            match answer {
                Ok(outcome) => self.settle(outcome, keys),
                Err(e) => {
                    // Nothing was committed: they go again with the next acks.
                    let mut keys = keys;
                    keys.append(&mut self.to_ack);
                    self.to_ack = keys;
                    if let Some((recorded, _)) = joint {
                        self.records_again(recorded);
                    }
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }
}
