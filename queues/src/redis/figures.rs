//! The broker's own figures for a stream and its group (`XLEN`, `XINFO GROUPS`): what KEDA's Redis Streams
//! scaler reads, and where [`super::RedisQueue`]'s depth comes from.

use ::redis::Value;

use super::RedisQueue;
use super::reply::{int, pairs, text};
use crate::QueueError;

/// What the server itself says about the stream and the group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamFigures {
    /// `XLEN`.
    pub length: u64,
    /// The group's pending entries (`XINFO GROUPS` `pending`, the count `XPENDING` gives).
    pub pending: u64,
    /// The group's `lag`: entries not yet delivered to it. `None` when Redis cannot count it (nil).
    pub lag: Option<u64>,
    /// Whether the stream has our group (false also when the stream does not exist).
    pub group_exists: bool,
}

impl RedisQueue {
    /// The broker's own figures: `XLEN`, and the group's `pending` and `lag` from `XINFO GROUPS`.
    pub async fn figures(&self) -> Result<StreamFigures, QueueError> {
        let mut conn = self.conn.clone();
        let (len, groups): (u64, Value) = match ::redis::pipe()
            .cmd("XLEN")
            .arg(&self.url.stream)
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.url.stream)
            .query_async(&mut conn)
            .await
        {
            Ok(v) => v,
            // XINFO on a missing key is an error; XLEN says 0.
            Err(e) if e.to_string().contains("no such key") => return Ok(StreamFigures::default()),
            Err(e) => return Err(self.err("XINFO GROUPS")(e)),
        };
        let Value::Array(groups) = groups else {
            return Err(self.reply("XINFO GROUPS", format!("{groups:?}")));
        };
        for g in groups {
            let fields = pairs(&g);
            if fields
                .iter()
                .any(|(k, v)| *k == "name" && text(v) == Some(&self.url.group))
            {
                let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
                let pending = field("pending").and_then(int).unwrap_or(0);
                let lag = field("lag").and_then(int);
                return Ok(StreamFigures {
                    length: len,
                    pending,
                    lag,
                    group_exists: true,
                });
            }
        }
        Ok(StreamFigures {
            length: len,
            pending: 0,
            lag: Some(len),
            group_exists: false,
        })
    }
}
