//! A consumer's handle claims ahead on a thread of its own (see `sqlite::push`): never more than its window,
//! acks answered only once committed, and whatever it claimed that no caller took given back when
//! deliveries stop or the handle goes.

use super::*;
use crate::Background;

const LEASE: Duration = Duration::from_secs(30);

async fn depth(q: &Arc<dyn Queue>) -> (u64, u64) {
    let d = q.depth().await.unwrap();
    (d.visible, d.in_flight.unwrap_or(0))
}

/// Waits until the depth is `want` (the thread claims in its own time), or fails saying what it was.
async fn depth_becomes(q: &Arc<dyn Queue>, want: (u64, u64)) {
    let mut seen = depth(q).await;
    for _ in 0..1000 {
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = depth(q).await;
    }
    panic!("depth stayed {seen:?}, expected {want:?}");
}

async fn consumer_queue(dir: &tempfile::TempDir, window: usize) -> Arc<dyn Queue> {
    let q = queue(dir).await;
    q.hold_at_most(window);
    q
}

fn ticket(b: Background) -> crate::AckTicket {
    match b {
        Background::Queued(t) => t,
        Background::Declined(..) => panic!("declined"),
    }
}

#[tokio::test]
async fn a_consumer_handle_claims_ahead_up_to_its_window_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 25).await;
    q.publish(bodies(100)).await.unwrap();
    let got = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 10);
    // Claimed ahead in batches of the largest receive (10): 20. The 5 of room left are not claimed alone
    // while messages wait in the buffer (a transaction for a sliver).
    depth_becomes(&q, (80, 20)).await;
    let mut all = got;
    all.extend(q.receive(10, LEASE, Duration::ZERO).await.unwrap());
    // The buffer is empty: now the sliver is claimed, up to the window and no further.
    depth_becomes(&q, (75, 25)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(depth(&q).await, (75, 25), "claimed past the window");
    // Oldest first, each message once, across what was taken and what was claimed ahead.
    while all.len() < 25 {
        all.extend(q.receive(10, LEASE, Duration::ZERO).await.unwrap());
    }
    let bodies_seen: Vec<Vec<u8>> = all.iter().map(|d| d.body.clone()).collect();
    assert_eq!(bodies_seen, bodies(25));
}

#[tokio::test]
async fn acks_in_the_background_are_answered_once_committed_and_widen_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 20).await;
    q.publish(bodies(50)).await.unwrap();
    let got = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    depth_becomes(&q, (30, 20)).await;
    let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt.clone()).collect();
    let answer = ticket(q.ack_in_background(receipts, None)).await.unwrap();
    assert_eq!(
        answer.unwrap(),
        AckOutcome {
            acked: 10,
            lease_lost: 0
        }
    );
    // The 10 acked are gone; their room was claimed again: 20 held, 20 waiting.
    depth_becomes(&q, (20, 20)).await;
    // Acked twice: the second answer says lease_lost, as a plain ack would.
    let again: Vec<Receipt> = got.iter().map(|d| d.receipt.clone()).collect();
    let answer = ticket(q.ack_in_background(again, None)).await.unwrap();
    assert_eq!(
        answer.unwrap(),
        AckOutcome {
            acked: 0,
            lease_lost: 10
        }
    );
}

#[tokio::test]
async fn stopping_gives_back_what_was_claimed_ahead_and_keeps_what_the_caller_holds() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 30).await;
    q.publish(bodies(40)).await.unwrap();
    let held = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    depth_becomes(&q, (10, 30)).await;
    q.stop_receiving().await.unwrap();
    // The 20 claimed ahead are visible again at once; the 10 the caller holds stay leased.
    assert_eq!(depth(&q).await, (30, 10));
    // After the stop, acks are the caller's to send, and they still count.
    let receipts: Vec<Receipt> = held.iter().map(|d| d.receipt.clone()).collect();
    let receipts = match q.ack_in_background(receipts, None) {
        Background::Declined(r, None) => r,
        _ => panic!("acks taken by a stopped thread"),
    };
    assert_eq!(q.ack(receipts).await.unwrap().acked, 10);
    // Another consumer gets the rest at once, each message once.
    let other = queue(&dir).await;
    let rest = other.receive(100, LEASE, Duration::ZERO).await.unwrap();
    let seen: Vec<Vec<u8>> = rest.iter().map(|d| d.body.clone()).collect();
    assert_eq!(seen, bodies(40)[10..].to_vec());
    // Claimed ahead and given back untaken, they were never delivered: this is their first delivery.
    assert!(
        rest.iter().all(|d| d.deliveries == 1),
        "a delivery counted for a claim ahead"
    );
}

#[tokio::test]
async fn a_receive_after_the_stop_claims_again() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 20).await;
    q.publish(bodies(30)).await.unwrap();
    let first = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    q.stop_receiving().await.unwrap();
    assert_eq!(depth(&q).await, (20, 10));
    // The same handle taken up again (a consumer run in the same process): it claims ahead again.
    let second = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    depth_becomes(&q, (0, 30)).await;
    let seen: Vec<Vec<u8>> = first
        .iter()
        .chain(&second)
        .map(|d| d.body.clone())
        .collect();
    assert_eq!(seen, bodies(20));
}

#[tokio::test]
async fn dropping_the_handle_gives_back_what_was_claimed_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 30).await;
    q.publish(bodies(40)).await.unwrap();
    let held = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    depth_becomes(&q, (10, 30)).await;
    let receipts: Vec<Receipt> = held.iter().map(|d| d.receipt.clone()).collect();
    assert_eq!(q.ack(receipts).await.unwrap().acked, 10);
    drop(q);
    let other = queue(&dir).await;
    assert_eq!(depth(&other).await, (30, 0));
}

#[tokio::test]
async fn a_handle_nobody_said_a_window_for_claims_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(30)).await.unwrap();
    assert_eq!(
        q.receive(10, LEASE, Duration::ZERO).await.unwrap().len(),
        10
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(depth(&q).await, (20, 10));
    assert!(matches!(
        q.ack_in_background(Vec::new(), None),
        Background::Declined(..)
    ));
}

#[tokio::test]
async fn a_failed_ack_in_the_background_is_answered_with_the_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 10).await;
    q.publish(bodies(10)).await.unwrap();
    let got = q.receive(10, LEASE, Duration::from_secs(1)).await.unwrap();
    // A trigger refuses every delete: the transaction fails, and the answer says so.
    let c = Connection::open(dir.path().join("q.db")).unwrap();
    c.execute_batch(
        "CREATE TRIGGER no_acks BEFORE DELETE ON mw_messages BEGIN SELECT RAISE(ABORT, 'no'); END;",
    )
    .unwrap();
    let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt.clone()).collect();
    let answer = ticket(q.ack_in_background(receipts.clone(), None))
        .await
        .unwrap();
    assert!(answer.is_err());
    assert_eq!(depth(&q).await, (0, 10));
    // Sent again once the fault is gone, they go through.
    c.execute_batch("DROP TRIGGER no_acks;").unwrap();
    let answer = ticket(q.ack_in_background(receipts, None)).await.unwrap();
    assert_eq!(answer.unwrap().acked, 10);
    assert_eq!(depth(&q).await, (0, 0));
}

#[tokio::test]
async fn messages_left_in_the_buffer_are_given_back_before_their_lease_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let q = consumer_queue(&dir, 50).await;
    q.publish(bodies(30)).await.unwrap();
    let lease = Duration::from_millis(600);
    let first = q.receive(5, lease, Duration::from_secs(1)).await.unwrap();
    let receipts: Vec<Receipt> = first.iter().map(|d| d.receipt.clone()).collect();
    assert_eq!(q.ack(receipts).await.unwrap().acked, 5);
    // Claimed ahead: two turns of what the caller asked for (5), not the whole window.
    depth_becomes(&q, (15, 10)).await;
    // Not taken for twice the lease: given back at half of it (to whoever claims first; this handle claims
    // them again at once), so that none of them ever outlives its lease in the buffer.
    tokio::time::sleep(lease * 2).await;
    let other = queue(&dir).await;
    let theirs = other.receive(100, LEASE, Duration::ZERO).await.unwrap();
    let mut ours = Vec::new();
    while ours.len() + theirs.len() < 25 {
        let more = q.receive(10, lease, Duration::from_secs(2)).await.unwrap();
        assert!(!more.is_empty(), "the buffer was not filled again");
        ours.extend(more);
    }
    // Each of the 25 once, and every lease still good: a buffered message whose lease had run out would
    // have gone to the other handle as well, and its ack here would say lease_lost.
    let mut seen: Vec<Vec<u8>> = ours.iter().chain(&theirs).map(|d| d.body.clone()).collect();
    seen.sort();
    let mut want = bodies(30)[5..].to_vec();
    want.sort();
    assert_eq!(seen, want);
    assert!(
        ours.iter().chain(&theirs).all(|d| d.deliveries == 1),
        "claims ahead counted as deliveries"
    );
    let receipts: Vec<Receipt> = ours.iter().map(|d| d.receipt.clone()).collect();
    let n = receipts.len() as u64;
    assert_eq!(
        q.ack(receipts).await.unwrap(),
        AckOutcome {
            acked: n,
            lease_lost: 0
        }
    );
}
