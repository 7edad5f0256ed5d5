use super::tally::MISSING_RANGES_SHOWN;
use super::*;
use workload::envelope::format_run_id;
use workload::ledger::{self, Entry, Outcome};

const RUN: u64 = 0x9f3a_0c2e_4b1d_7a65;

fn record(producer_id: u32, sent: u64) -> ProducerRecord {
    ProducerRecord {
        run_id: RUN,
        producer_id,
        sent,
        seq_end: sent,
        unconfirmed: Vec::new(),
        from_summary: true,
        source: "test".into(),
    }
}

fn entry(producer_id: u32, seq: u64) -> Entry {
    Entry {
        run_id: RUN,
        producer_id,
        seq,
    }
}

fn totals(audit: &Audit) -> Totals {
    audit.report().totals
}

#[test]
fn a_clean_run_loses_nothing() {
    let mut a = Audit::new([record(1, 1000), record(2, 3)]);
    for seq in (0..1000).rev() {
        a.add_entry(entry(1, seq));
    }
    for seq in 0..3 {
        a.add_entry(entry(2, seq));
    }
    let r = a.report();
    assert_eq!(
        r.totals,
        Totals {
            produced: 1003,
            consumed: 1003,
            ledger_entries: 1003,
            ..Totals::default()
        }
    );
    assert!(r.producers.iter().all(|p| p.missing.is_empty()));
}

#[test]
fn loss_is_counted_and_located() {
    let mut a = Audit::new([record(1, 200)]);
    for seq in (0..200).filter(|s| ![3, 64, 65, 66].contains(s) && *s < 150) {
        a.add_entry(entry(1, seq));
    }
    let r = a.report();
    assert_eq!(r.totals.lost, 4 + 50);
    assert_eq!(r.totals.consumed, 200 - 54);
    assert_eq!(r.producers[0].missing, vec![3..4, 64..67, 150..200]);
    assert_eq!(r.producers[0].missing_ranges, 3);
    let mut table = Vec::new();
    r.write_table(&mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("lost seqs: 3, 64-66, 150-199"), "{table}");
}

#[test]
fn nothing_consumed_is_all_lost_and_many_ranges_are_summarised() {
    let a = Audit::new([record(1, 10)]);
    assert_eq!(a.report().producers[0].missing, vec![0..10]);
    let mut a = Audit::new([record(1, 100)]);
    for seq in (0..100).step_by(2) {
        a.add_entry(entry(1, seq));
    }
    let p = &a.report().producers[0];
    assert_eq!(p.missing_ranges, 50);
    assert_eq!(p.missing.len(), MISSING_RANGES_SHOWN);
}

#[test]
fn duplicates_count_repeats_and_are_not_consumption() {
    let mut a = Audit::new([record(1, 3)]);
    for seq in [0, 1, 1, 1, 2, 0] {
        a.add_entry(entry(1, seq));
    }
    let t = totals(&a);
    assert_eq!((t.consumed, t.lost, t.duplicates), (3, 0, 3));
    assert_eq!(t.ledger_entries, t.consumed + t.unexpected + t.duplicates);
}

fn poison(producer_id: u32, seq: u64) -> (Entry, Outcome) {
    (entry(producer_id, seq), Outcome::Poison { deliveries: 3 })
}

#[test]
fn poison_is_accounted_for_but_not_consumed() {
    let mut a = Audit::new([record(1, 10)]);
    for seq in 0..6 {
        a.add_entry(entry(1, seq));
    }
    for seq in [6, 7, 7] {
        let (e, o) = poison(1, seq);
        a.add_outcome(e, o);
    }
    let r = a.report();
    let t = r.totals;
    assert_eq!(
        (t.consumed, t.poison, t.lost, t.duplicates, t.poison_entries),
        (6, 2, 2, 0, 3),
        "poisoned twice is one poison message and no duplicate"
    );
    assert_eq!(t.produced, t.consumed + t.poison + t.lost);
    assert_eq!(
        t.ledger_entries,
        t.consumed + t.unconfirmed_consumed + t.unexpected + t.duplicates + t.poison_entries
    );
    assert_eq!(r.producers[0].missing, vec![8..10], "poison is not missing");
    let mut table = Vec::new();
    r.write_table(&mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("poison: 2 message(s)"), "{table}");
}

#[test]
fn consumed_then_poisoned_is_consumed_once_not_a_duplicate() {
    // At-least-once: consumer A recorded seq 0 and its ack was lost; later deliveries failed until B set it
    // aside. The work succeeded exactly once.
    let mut a = Audit::new([record(1, 2)]);
    a.add_entry(entry(1, 0));
    let (e, o) = poison(1, 0);
    a.add_outcome(e, o);
    a.add_entry(entry(1, 1));
    let t = totals(&a);
    assert_eq!(
        (
            t.consumed,
            t.poison,
            t.poison_after_consumed,
            t.lost,
            t.duplicates
        ),
        (2, 0, 1, 0, 0)
    );
    assert_eq!(t.produced, t.consumed + t.poison + t.lost);
    // Poisoned first, consumed later (a slow consumer whose ack was refused but whose entry counts): the
    // same answer, whatever the order the ledgers are read in.
    let mut b = Audit::new([record(1, 2)]);
    b.add_outcome(e, o);
    b.add_entry(entry(1, 0));
    b.add_entry(entry(1, 1));
    assert_eq!(totals(&b), t);
}

#[test]
fn poison_lines_are_read_from_ledgers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ledger");
    let mut w = ledger::LedgerWriter::open(&path).unwrap();
    w.push(entry(1, 0));
    w.push_outcome(entry(1, 1), Outcome::Poison { deliveries: 4 });
    w.flush().unwrap();
    let mut a = Audit::new([record(1, 3)]);
    a.add_ledger(&path).unwrap();
    let t = totals(&a);
    assert_eq!(
        (t.consumed, t.poison, t.lost, t.malformed_ledger_lines),
        (1, 1, 1, 0)
    );
}

#[test]
fn entries_outside_every_range_are_unexpected() {
    let mut a = Audit::new([record(1, 5)]);
    a.add_entry(entry(1, 4)); // in range
    a.add_entry(entry(1, 5)); // past what was confirmed
    a.add_entry(entry(9, 0)); // a producer not given
    a.add_entry(Entry {
        run_id: 1,
        producer_id: 1,
        seq: 0,
    }); // another run
    a.add_entry(entry(9, 0)); // a repeat of an unexpected one is a duplicate
    let t = totals(&a);
    assert_eq!(
        (t.consumed, t.lost, t.unexpected, t.duplicates),
        (1, 4, 3, 1)
    );
    assert_eq!(t.ledger_entries, t.consumed + t.unexpected + t.duplicates);
}

#[test]
fn unconfirmed_batches_are_neither_lost_nor_unexpected() {
    // seq_end 10, batch 4..6 given up: 8 confirmed. Seqs 4 (unconfirmed, arrived anyway) and 0..4, 6..9
    // consumed; 9 lost.
    let r = ProducerRecord {
        sent: 8,
        seq_end: 10,
        unconfirmed: std::iter::once(4..6).collect(),
        ..record(1, 8)
    };
    let mut audit = Audit::new([r]);
    for seq in [0, 1, 2, 3, 4, 6, 7, 8] {
        audit.add_entry(entry(1, seq));
    }
    let report = audit.report();
    let t = report.totals;
    assert_eq!((t.produced, t.consumed, t.lost, t.unexpected), (8, 7, 1, 0));
    assert_eq!((t.unconfirmed, t.unconfirmed_consumed), (2, 1));
    assert_eq!(report.producers[0].missing, vec![9..10]);
}

#[test]
fn unconfirmed_ranges_are_read_from_the_summary() {
    let line = format!(
        r#"{{"role":"producer","kind":"summary","run_id":"{}","producer_id":3,"sent":8,"seq_end":10,"unconfirmed_ranges":[[4,2]]}}"#,
        format_run_id(RUN)
    );
    let (records, _) = records_from_lines("p", [line]).unwrap();
    assert_eq!(
        (records[0].seq_end, records[0].unconfirmed.clone()),
        (10, std::iter::once(4..6).collect::<Vec<_>>())
    );
    let bad = format!(
        r#"{{"role":"producer","kind":"summary","run_id":"{}","producer_id":3,"sent":8,"seq_end":10,"unconfirmed_ranges":[[9,5]]}}"#,
        format_run_id(RUN)
    );
    assert!(
        records_from_lines("p", [bad]).is_err(),
        "a range past seq_end is refused"
    );
}

#[test]
fn the_same_producer_twice_is_counted_once() {
    let mut a = Audit::new([record(1, 5), record(1, 7)]);
    for seq in 0..7 {
        a.add_entry(entry(1, seq));
    }
    let r = a.report();
    assert_eq!((r.totals.produced, r.totals.lost), (7, 0));
    assert_eq!(r.warnings.len(), 1);
}

fn line(kind: &str, producer_id: u32, sent: u64) -> String {
    format!(
        r#"{{"role":"producer","kind":"{kind}","run_id":"{}","producer_id":{producer_id},"sent":{sent}}}"#,
        format_run_id(RUN)
    )
}

#[test]
fn records_prefer_the_summary_and_fall_back_to_the_last_interval() {
    let lines = vec![
        line("interval", 1, 10),
        line("interval", 2, 10),
        r#"{"role":"consumer","kind":"summary","acked":3}"#.to_string(),
        "not json".to_string(),
        line("interval", 1, 20),
        line("summary", 1, 25),
        line("interval", 2, 30),
    ];
    let (records, warnings) = records_from_lines("p.jsonl", lines).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].sent, records[0].from_summary),
        (25, true),
        "summary wins"
    );
    assert_eq!(
        (records[1].sent, records[1].from_summary),
        (30, false),
        "last interval"
    );
    assert!(warnings.iter().any(|w| w.contains("not JSON")));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("producer 2") && w.contains("no summary"))
    );
}

#[test]
fn a_killed_producer_audits_from_its_last_interval() {
    // Killed after its last interval said 10 sent; it had confirmed 12 by then.
    let (records, _) = records_from_lines("p", vec![line("interval", 1, 10)]).unwrap();
    let mut a = Audit::new(records);
    for seq in 0..12 {
        a.add_entry(entry(1, seq));
    }
    let t = totals(&a);
    assert_eq!(
        (t.produced, t.consumed, t.lost, t.unexpected),
        (10, 10, 0, 2)
    );
}

#[test]
fn producer_files_without_producer_lines_or_with_bad_fields_are_errors() {
    let e = records_from_lines("x.jsonl", vec![r#"{"role":"consumer"}"#.to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.jsonl") && e.contains("no producer stats"),
        "{e}"
    );
    let bad = r#"{"role":"producer","kind":"summary","run_id":"zz","producer_id":1,"sent":1}"#;
    let e = records_from_lines("y", vec![bad.to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("y line 1") && e.contains("run_id"), "{e}");
}

#[test]
fn ledgers_are_read_from_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.ledger"),
        format!(
            "{} 1 0\n{} 1 1\ntorn",
            format_run_id(RUN),
            format_run_id(RUN)
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let files = ledger_files(dir.path()).unwrap();
    assert_eq!(files, vec![dir.path().join("a.ledger")]);
    let mut a = Audit::new([record(1, 2)]);
    for f in &files {
        a.add_ledger(f).unwrap();
    }
    let t = totals(&a);
    assert_eq!((t.consumed, t.lost, t.malformed_ledger_lines), (2, 0, 1));
    let empty = tempfile::tempdir().unwrap();
    let e = ledger_files(empty.path()).unwrap_err().to_string();
    assert!(e.contains("no *.ledger files"), "{e}");
    let e = Audit::new([])
        .add_ledger(&dir.path().join("missing.ledger"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.ledger"), "{e}");
}
