//! The queues of one file: the work queue's table `mw_messages`, and beside it the sibling queues named from it
//! (`mw_telemetry`, `mw_heartbeat`: the telemetry channel), each with counters of its own in `mw_counters`, so
//! that the depth of one never counts another's messages.
//!
//! Why siblings are tables and not files of their own: a consumer writes the ledger records of an ack batch in
//! the same transaction as the acks ([`crate::Queue::ack_and_receive_recorded`]), one commit where two files
//! took two, and the messages it acks no longer wait a turn for their records' confirmation.

/// The work queue's table, the one name files made before siblings were tables have.
const WORK: &str = "mw_messages";

/// One queue's table and the statements that serve it.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) name: String,
    /// Its counters' names in `mw_counters`.
    pub(super) messages: String,
    pub(super) leased: String,
    pub(super) insert: String,
    pub(super) insert_at: String,
    pub(super) delete_expired: String,
    pub(super) delete_acked: String,
    pub(super) delete_claim: String,
    pub(super) claim: String,
    pub(super) release: String,
    pub(super) unclaim: String,
    pub(super) extend: String,
}

impl Table {
    /// The work queue's table, with the counter names files made before siblings were tables have.
    pub(super) fn work() -> Table {
        Table::new(WORK.into(), "messages".into(), "leased".into())
    }

    /// The table of the sibling `suffix` (see [`crate::Target::sibling`]).
    ///
    /// # Errors
    /// A suffix that is not a plain lower-case name (it becomes part of an SQL identifier).
    pub(super) fn sibling(suffix: &str) -> Result<Table, String> {
        if suffix.is_empty()
            || !suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "{suffix:?} cannot name a table: use lower-case letters, digits and '_'"
            ));
        }
        if format!("mw_{suffix}") == WORK {
            return Err(format!("{suffix:?} names the work queue's own table"));
        }
        Ok(Table::new(
            format!("mw_{suffix}"),
            format!("{suffix}:messages"),
            format!("{suffix}:leased"),
        ))
    }

    /// Whether this is the work queue's table.
    pub(super) fn is_work(&self) -> bool {
        self.name == WORK
    }

    fn new(name: String, messages: String, leased: String) -> Table {
        Table {
            insert: format!("INSERT INTO {name} (body) VALUES (?1)"),
            insert_at: format!("INSERT INTO {name} (body, visible_at) VALUES (?1, ?2)"),
            delete_expired: format!("DELETE FROM {name} WHERE lease = 0 AND visible_at < ?1"),
            delete_acked: format!("DELETE FROM {name} WHERE id = ?1 AND lease = ?2"),
            delete_claim: format!("DELETE FROM {name} WHERE id BETWEEN ?1 AND ?2 AND lease = ?3"),
            // In SQLite every SET expression reads the row's old values, so `fresh` records whether the row
            // was unleased before this claim.
            claim: format!(
                "UPDATE {name}
                    SET visible_at = ?1 + ?2, lease = ?3, fresh = (lease = 0), deliveries = deliveries + 1
                  WHERE id IN (SELECT id FROM {name} WHERE visible_at <= ?1 ORDER BY id LIMIT ?4)
              RETURNING id, body, deliveries, fresh"
            ),
            release: format!(
                "UPDATE {name} SET visible_at = ?3, lease = 0 WHERE id = ?1 AND lease = ?2"
            ),
            // A release of messages claimed ahead that no caller took: they were not delivered.
            unclaim: format!(
                "UPDATE {name} SET visible_at = ?3, lease = 0, deliveries = max(deliveries - 1, 0)
                  WHERE id = ?1 AND lease = ?2"
            ),
            extend: format!("UPDATE {name} SET visible_at = ?3 WHERE id = ?1 AND lease = ?2"),
            name,
            messages,
            leased,
        }
    }

    /// Creates the table and its counters when missing (inside the opening transaction).
    pub(super) fn schema(&self) -> String {
        let Table {
            name,
            messages,
            leased,
            ..
        } = self;
        format!(
            "
CREATE TABLE IF NOT EXISTS {name} (
    id         INTEGER PRIMARY KEY,
    body       BLOB    NOT NULL,
    visible_at INTEGER NOT NULL DEFAULT 0,  -- unix ms; claimable when <= now
    lease      INTEGER NOT NULL DEFAULT 0,  -- token of the current lease, 0 when not leased
    fresh      INTEGER NOT NULL DEFAULT 0,  -- whether the last claim found it unleased (for the in-flight counter)
    deliveries INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO mw_counters (name, value) VALUES ('{messages}', 0), ('{leased}', 0);
"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_names_are_plain_identifiers_and_never_the_work_table() {
        let t = Table::sibling("telemetry").unwrap();
        assert_eq!(
            (t.name.as_str(), t.messages.as_str()),
            ("mw_telemetry", "telemetry:messages")
        );
        for bad in [
            "",
            "Telemetry",
            "x; DROP TABLE mw_messages",
            "a-b",
            "messages",
        ] {
            assert!(Table::sibling(bad).is_err(), "{bad:?} accepted");
        }
        let w = Table::work();
        assert_eq!(
            (w.messages.as_str(), w.leased.as_str()),
            ("messages", "leased")
        );
    }
}
