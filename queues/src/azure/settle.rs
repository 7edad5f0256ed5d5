//! Settling receipts: how long a visibility change lasts, and how one ack's concurrent deletes are counted.

use std::time::Duration;

use crate::{AckOutcome, QueueError};

/// Longest visibility timeout the service accepts (7 days).
const MAX_VISIBILITY_S: u64 = 7 * 24 * 3600;

/// Whole seconds, rounded up (a lease is never shortened), within what the service accepts.
pub(super) fn visibility_seconds(d: Duration, min: u64) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.clamp(min, MAX_VISIBILITY_S) as i32
}

/// One ack's outcome from its deletes' results. A delete that failed without an answer counts as
/// lease_lost when others in the batch got one (the message comes back after its lease, as a lost one
/// does), so every receipt is counted once; when none got an answer, the error is returned and the caller
/// retries the whole batch, which `AzureQueue::delete_one` then counts right.
pub(super) fn ack_outcome(
    results: Vec<Result<bool, QueueError>>,
) -> Result<AckOutcome, QueueError> {
    let mut outcome = AckOutcome::default();
    let mut failed = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(true) => outcome.acked += 1,
            Ok(false) => outcome.lease_lost += 1,
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if outcome.acked == 0 && outcome.lease_lost == 0 => Err(e),
        Some(e) => {
            tracing::warn!(error = %e, failed, acked = outcome.acked, "some deletes failed; those messages return after their lease");
            outcome.lease_lost += failed;
            Ok(outcome)
        }
        None => Ok(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receipt_of_an_ack_is_counted_once() {
        let err = || Err(QueueError::invalid_url("azure://a/q", "test"));
        let out = ack_outcome(vec![Ok(true), err(), Ok(false), err()]).unwrap();
        assert_eq!(
            (out.acked, out.lease_lost),
            (1, 3),
            "unanswered deletes come back as lost ones"
        );
        assert!(
            ack_outcome(vec![err(), err()]).is_err(),
            "nothing answered: the caller retries all"
        );
        let out = ack_outcome(vec![Ok(true), Ok(true)]).unwrap();
        assert_eq!((out.acked, out.lease_lost), (2, 0));
    }

    #[test]
    fn visibility_rounds_up_and_stays_in_range() {
        assert_eq!(visibility_seconds(Duration::from_millis(100), 1), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(1500), 1), 2);
        assert_eq!(visibility_seconds(Duration::ZERO, 0), 0);
        assert_eq!(visibility_seconds(Duration::ZERO, 1), 1);
        assert_eq!(
            visibility_seconds(Duration::from_secs(30 * 86400), 1),
            604_800
        );
    }
}
