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

/// One ack's outcome from its deletes' results, once every delete has an answer. A delete still without one
/// (a timeout, a reset connection, a 503) may have been applied: counted as lease_lost, a message that was in
/// fact deleted never came back, and a consumer with `--count` waited for ever for it (seen in the telemetry
/// bench: 32 of 3,000 after one Azurite stall). So the whole ack fails with the first such error, and the
/// caller retries every receipt: an applied delete then answers 404 within the lease, which
/// `AzureQueue::delete_one` counts as acked, so each receipt is counted once, in the retry.
pub(super) fn ack_outcome(
    results: Vec<Result<bool, QueueError>>,
) -> Result<AckOutcome, QueueError> {
    let mut outcome = AckOutcome::default();
    for r in results {
        match r {
            Ok(true) => outcome.acked += 1,
            Ok(false) => outcome.lease_lost += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_without_an_answer_fails_the_whole_ack() {
        let err = || Err(QueueError::invalid_url("azure://a/q", "test"));
        assert!(
            ack_outcome(vec![Ok(true), err(), Ok(false)]).is_err(),
            "an unanswered delete may have been applied: never counted as lost"
        );
        assert!(ack_outcome(vec![err(), err()]).is_err());
        let out = ack_outcome(vec![Ok(true), Ok(false), Ok(true)]).unwrap();
        assert_eq!((out.acked, out.lease_lost), (2, 1));
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
