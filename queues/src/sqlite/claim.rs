//! The transactions that take the write lock most: a claim, with the acks (and ledger records) that ride in
//! it, and a release.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use super::{SqliteReceipt, Table};
use crate::{AckOutcome, BeforeCommit, Delivery, QueueError, Receipt, Recorded};
use workload::clock::unix_millis;

pub(super) fn add_counter(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    delta: i64,
) -> rusqlite::Result<()> {
    if delta != 0 {
        tx.prepare_cached("UPDATE mw_counters SET value = value + ?1 WHERE name = ?2")?
            .execute(params![delta, name])?;
    }
    Ok(())
}

/// Ledger records for a sibling's table, written in the acks' transaction.
pub(super) struct Records {
    suffix: &'static str,
    pub(super) table: Table,
    pub(super) bodies: Vec<Vec<u8>>,
    /// Taken when it runs: a transaction run again (its first try found the lock taken at `BEGIN`, or failed
    /// to commit) does not run it twice.
    pub(super) before_commit: Option<BeforeCommit>,
}

impl Records {
    /// The records of the sibling `suffix`, for its table in this file.
    ///
    /// # Errors
    /// A suffix that cannot name a table.
    pub(super) fn sibling(r: Recorded) -> Result<Records, QueueError> {
        let table = Table::sibling(r.suffix)
            .map_err(|reason| QueueError::new(crate::ErrorKind::Invalid, reason))?;
        Ok(Records {
            suffix: r.suffix,
            table,
            bodies: r.bodies,
            before_commit: r.before_commit,
        })
    }

    /// Back to what the caller gave, for a caller that must send them itself.
    pub(super) fn into_recorded(self) -> Recorded {
        Recorded {
            suffix: self.suffix,
            bodies: self.bodies,
            before_commit: self.before_commit,
        }
    }
}

/// Deletes the acked rows whose lease is still the one in their receipt; returns how many.
///
/// Acks that hold every receipt of one claim (a consumer acks its batches whole when nothing fails) delete it
/// with one range statement, `id BETWEEN first AND last AND lease = token`, not a statement per row: a fifth
/// of a consumer's transaction in the embedded benchmark. That deletes no row outside the acks: a lease
/// token is drawn afresh for each claim, only the rows of that claim carry it, and all of them are acked
/// here. Any other group goes row by row.
fn delete_acked(
    tx: &rusqlite::Transaction<'_>,
    t: &Table,
    acks: &[SqliteReceipt],
) -> rusqlite::Result<u64> {
    let mut sorted = acks.to_vec();
    sorted.sort_unstable_by_key(|r| (r.token, r.id));
    // The same receipt twice is one ack (the second finds its row gone, as it would alone).
    sorted.dedup_by_key(|r| (r.token, r.id));
    let mut acked = 0u64;
    for claim in sorted.chunk_by(|a, b| a.token == b.token) {
        let (first, last) = (claim[0], claim[claim.len() - 1]);
        let whole = claim.len() > 1 && claim.iter().all(|r| r.of as usize == claim.len());
        if whole {
            acked += tx.prepare_cached(&t.delete_claim)?.execute(params![
                first.id,
                last.id,
                first.token
            ])? as u64;
        } else {
            let mut delete = tx.prepare_cached(&t.delete_acked)?;
            for r in claim {
                acked += delete.execute(params![r.id, r.token])? as u64;
            }
        }
    }
    Ok(acked)
}

/// In one transaction: inserts `records` into their sibling's table, deletes the acked rows, claims up to
/// `max` visible ones, runs the records' hook, and commits.
pub(super) fn claim_tx(
    conn: &mut Connection,
    t: &Table,
    mut records: Option<&mut Records>,
    acks: &[SqliteReceipt],
    max: usize,
    lease: Duration,
) -> rusqlite::Result<(AckOutcome, Vec<Delivery>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(r) = records.as_deref_mut().filter(|r| !r.bodies.is_empty()) {
        let mut insert = tx.prepare_cached(&r.table.insert)?;
        for body in &r.bodies {
            insert.execute([body])?;
        }
        drop(insert);
        add_counter(&tx, &r.table.messages, r.bodies.len() as i64)?;
    }
    let mut outcome = AckOutcome::default();
    if !acks.is_empty() {
        outcome.acked = delete_acked(&tx, t, acks)?;
        outcome.lease_lost = acks.len() as u64 - outcome.acked;
    }
    let acked = outcome.acked as i64;
    // Rows are only read inside the transaction; sorting them and making deliveries waits for the commit,
    // so the write lock is not held for work that needs no lock.
    let mut claimed = Vec::new();
    let mut token = 0;
    let mut newly_leased = 0i64;
    if max > 0 {
        let now = unix_millis();
        token = loop {
            let t: i64 = rand::random();
            if t != 0 {
                break t;
            }
        };
        let mut claim = tx.prepare_cached(&t.claim)?;
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let mut rows = claim.query(params![now, lease_ms, token, max as i64])?;
        claimed.reserve(max.min(1024));
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let body: Vec<u8> = row.get(1)?;
            let deliveries: i64 = row.get(2)?;
            let fresh: bool = row.get(3)?;
            newly_leased += fresh as i64;
            claimed.push((id, body, deliveries.clamp(0, u32::MAX as i64) as u32));
        }
    }
    // The counters move by their net change, once each: a consumer in full flow acks as many as it leases,
    // so `leased` is left alone and the transaction makes one counter update, not three.
    add_counter(&tx, &t.messages, -acked)?;
    add_counter(&tx, &t.leased, newly_leased - acked)?;
    if let Some(hook) = records.and_then(|r| r.before_commit.take()) {
        // Reported as an abort with the hook's words; the transaction rolls back when `tx` drops.
        hook().map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some(format!("before the commit: {e}")),
            )
        })?;
    }
    tx.commit()?;
    // RETURNING does not promise an order; hand messages out oldest first.
    claimed.sort_unstable_by_key(|(id, ..)| *id);
    let of = u32::try_from(claimed.len()).unwrap_or(u32::MAX);
    let got = claimed
        .into_iter()
        .map(|(id, body, deliveries)| Delivery {
            body,
            receipt: Receipt::new(SqliteReceipt { id, token, of }),
            deliveries,
        })
        .collect();
    Ok((outcome, got))
}

/// Makes rows claimable again at `visible_at` (unix ms), those whose lease is still the one in their receipt;
/// returns how many were. Rows `delivered` to a caller keep their delivery count; others (claimed ahead and
/// never taken) lose the one their claim added.
pub(super) fn release_tx(
    conn: &mut Connection,
    t: &Table,
    ids: &[(i64, i64)],
    visible_at: i64,
    delivered: bool,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut released = 0u64;
    {
        let sql = if delivered { &t.release } else { &t.unclaim };
        let mut update = tx.prepare_cached(sql)?;
        for &(id, token) in ids {
            released += update.execute(params![id, token, visible_at])? as u64;
        }
    }
    add_counter(&tx, &t.leased, -(released as i64))?;
    tx.commit()?;
    Ok(released)
}
