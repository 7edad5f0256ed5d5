//! Acks that cover a whole claim delete it with one range statement: they must delete exactly the acked rows
//! whose lease still holds, as acks row by row do, and never a row outside the acks.

use super::*;

const LEASE: Duration = Duration::from_secs(30);

async fn take(q: &Arc<dyn Queue>, n: usize) -> Vec<Delivery> {
    q.receive(n, LEASE, Duration::ZERO).await.unwrap()
}

fn receipts(ds: &[Delivery]) -> Vec<Receipt> {
    ds.iter().map(|d| d.receipt.clone()).collect()
}

fn names(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}

async fn depth(q: &Arc<dyn Queue>) -> (u64, u64) {
    let d = q.depth().await.unwrap();
    (d.visible, d.in_flight.unwrap_or(0))
}

#[tokio::test]
async fn a_whole_claim_acked_deletes_it_and_nothing_between_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(6)).await.unwrap();
    // Claim A takes m0 and m1, then gives m0 back; claim B takes m0 and m2: inside A's id range lies a row
    // of B's.
    let a = take(&q, 2).await;
    assert_eq!(names(&a), ["m0", "m1"]);
    assert_eq!(
        q.release(vec![a[0].receipt.clone()], Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let b = take(&q, 2).await;
    assert_eq!(names(&b), ["m0", "m2"]);
    // All of A's receipts: m1 goes, m0 (B's lease now) stays.
    let out = q.ack(receipts(&a)).await.unwrap();
    assert_eq!(
        out,
        AckOutcome {
            acked: 1,
            lease_lost: 1
        }
    );
    assert_eq!(
        depth(&q).await,
        (3, 2),
        "m0 and m2 held by B, m3..m5 waiting"
    );
    // B's acks delete both of its rows.
    let out = q.ack(receipts(&b)).await.unwrap();
    assert_eq!(
        out,
        AckOutcome {
            acked: 2,
            lease_lost: 0
        }
    );
    let rest = take(&q, 10).await;
    assert_eq!(names(&rest), ["m3", "m4", "m5"]);
    assert_eq!(q.ack(receipts(&rest)).await.unwrap().acked, 3);
    assert_eq!(depth(&q).await, (0, 0));
}

#[tokio::test]
async fn part_of_a_claim_acked_leaves_the_rest_leased_and_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(5)).await.unwrap();
    let got = q
        .receive(5, Duration::from_millis(300), Duration::ZERO)
        .await
        .unwrap();
    // m0, m2 and m4 acked: m1 and m3 lie between them and must survive.
    let some = vec![
        got[0].receipt.clone(),
        got[2].receipt.clone(),
        got[4].receipt.clone(),
    ];
    assert_eq!(
        q.ack(some).await.unwrap(),
        AckOutcome {
            acked: 3,
            lease_lost: 0
        }
    );
    assert_eq!(depth(&q).await, (0, 2));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = take(&q, 10).await;
    assert_eq!(names(&again), ["m1", "m3"]);
    assert!(again.iter().all(|d| d.deliveries == 2));
    assert_eq!(q.ack(receipts(&again)).await.unwrap().acked, 2);
    assert_eq!(depth(&q).await, (0, 0));
}

#[tokio::test]
async fn a_receipt_twice_in_one_ack_counts_once_as_acked() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(3)).await.unwrap();
    let got = take(&q, 2).await;
    // m0 twice: not the whole claim (m1 missing), so m1 must survive.
    let twice = vec![got[0].receipt.clone(), got[0].receipt.clone()];
    assert_eq!(
        q.ack(twice).await.unwrap(),
        AckOutcome {
            acked: 1,
            lease_lost: 1
        }
    );
    assert_eq!(depth(&q).await, (1, 1), "m1 still held, m2 waiting");
    // m1 twice with m0 again: the whole claim is named; only m1 is left to delete.
    let again = vec![
        got[1].receipt.clone(),
        got[0].receipt.clone(),
        got[1].receipt.clone(),
    ];
    assert_eq!(
        q.ack(again).await.unwrap(),
        AckOutcome {
            acked: 1,
            lease_lost: 2
        }
    );
    assert_eq!(depth(&q).await, (1, 0));
}

#[tokio::test]
async fn acks_of_several_claims_in_one_call_delete_each_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    q.publish(bodies(300)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.extend(take(&q, 100).await);
    }
    // Whole claims and a part of one, mixed in one ack, in no particular order.
    let mut acks = receipts(&held[..250]);
    acks.reverse();
    let (out, next) = q
        .ack_and_receive(acks, 0, LEASE, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        out,
        AckOutcome {
            acked: 250,
            lease_lost: 0
        }
    );
    assert!(next.is_empty());
    assert_eq!(depth(&q).await, (0, 50));
    assert_eq!(q.ack(receipts(&held[250..])).await.unwrap().acked, 50);
    assert_eq!(depth(&q).await, (0, 0));
}
