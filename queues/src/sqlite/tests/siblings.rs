//! The sibling queues of a file (tables beside the work queue's) and records written with the acks.

use super::*;
use crate::BeforeCommit;
fn tables(path: &Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_sibling_is_a_table_of_the_same_file_with_a_depth_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let url = crate::QueueUrl::parse(&format!("sqlite:{}", path.display())).unwrap();
    let sibling = url.sibling("telemetry").unwrap();
    assert!(
        sibling
            .to_string()
            .ends_with("q.db (telemetry: table mw_telemetry in the same file)"),
        "{sibling}"
    );
    let work = url.open().await.unwrap();
    work.publish(bodies(3)).await.unwrap();
    // A reader (an audit, a watch) finds no sibling before anything was published there, and makes none.
    let e = sibling.open_existing().await.err().expect("not there yet");
    assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{e}");
    assert!(!tables(&path).contains(&"mw_telemetry".to_string()));
    sibling
        .open()
        .await
        .unwrap()
        .publish(bodies(7))
        .await
        .unwrap();
    assert_eq!(work.depth().await.unwrap().total(), 3, "the engine's depth");
    let records = sibling.open_existing().await.unwrap();
    assert_eq!(records.depth().await.unwrap().total(), 7);
    assert_eq!(
        tables(&path),
        ["mw_counters", "mw_messages", "mw_telemetry"],
        "one file, a table each"
    );
    assert!(!dir.path().join("q-telemetry.db").exists());
    // Receiving from one never takes the other's messages.
    let got = records
        .receive(100, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 7);
    let got = work
        .receive(100, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn records_written_with_acks_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let url = crate::QueueUrl::parse(&format!("sqlite:{}", path.display())).unwrap();
    let work = url.open().await.unwrap();
    let records = url.sibling("telemetry").unwrap().open().await.unwrap();
    assert!(work.records_with_acks("telemetry"));
    work.publish(bodies(5)).await.unwrap();
    let lease = Duration::from_secs(60);
    let receipts: Vec<Receipt> = work
        .receive(5, lease, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.receipt)
        .collect();
    // Every delete of a work row is refused: the records inserted before it in the same transaction go too.
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER refuse BEFORE DELETE ON mw_messages BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let refused = work
        .ack_and_receive_recorded(
            recorded(2, None),
            receipts.clone(),
            0,
            lease,
            Duration::ZERO,
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        records.depth().await.unwrap().total(),
        0,
        "no record without its ack"
    );
    assert_eq!(
        work.depth().await.unwrap().in_flight,
        Some(5),
        "no ack without its record"
    );
    raw.execute_batch("DROP TRIGGER refuse").unwrap();
    // A hook that fails (the consumer's file ledger) aborts the step too.
    let failing: BeforeCommit = Box::new(|| Err(std::io::Error::other("disk full")));
    let refused = work
        .ack_and_receive_recorded(
            recorded(2, Some(failing)),
            receipts.clone(),
            0,
            lease,
            Duration::ZERO,
        )
        .await;
    assert!(refused.unwrap_err().to_string().contains("disk full"));
    assert_eq!(records.depth().await.unwrap().total(), 0);
    assert_eq!(work.depth().await.unwrap().in_flight, Some(5));
    // The hook runs once, before the commit: another connection sees neither records nor acks yet.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen_in_hook, file) = (seen.clone(), path.clone());
    let hook: BeforeCommit = Box::new(move || {
        let c = Connection::open(&file).map_err(std::io::Error::other)?;
        let count = |table: &str| -> i64 {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap_or(-1)
        };
        let counts = (count("mw_telemetry"), count("mw_messages"));
        seen_in_hook.lock().unwrap().push(counts);
        Ok(())
    });
    let (outcome, got) = work
        .ack_and_receive_recorded(recorded(2, Some(hook)), receipts, 10, lease, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((outcome.acked, outcome.lease_lost, got.len()), (5, 0, 0));
    assert_eq!(*seen.lock().unwrap(), [(0, 5)], "before the commit, once");
    assert_eq!(records.depth().await.unwrap().total(), 2);
    assert_eq!(work.depth().await.unwrap().total(), 0);
}

fn recorded(n: usize, before_commit: Option<BeforeCommit>) -> crate::Recorded {
    crate::Recorded {
        suffix: "telemetry",
        bodies: bodies(n),
        before_commit,
    }
}
