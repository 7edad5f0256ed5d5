//! Reading the server's replies (RESP2 arrays, as the client gives them) into deliveries and figures.

use std::time::{Duration, Instant};

use ::redis::Value;

use super::{BODY_FIELD, DELIVERIES_FIELD, RedisReceipt};
use crate::{Delivery, Receipt};

/// A stream entry as a delivery: our body field, or (a foreign entry) its first value, which the consumer
/// then counts as foreign.
/// `sent_at` is when the request that delivered it was sent: the lease runs from no earlier.
pub(super) fn delivery(
    id: String,
    counter: u64,
    fields: &Value,
    lease: Duration,
    sent_at: Instant,
) -> Delivery {
    let fields = pairs(fields);
    let body = fields
        .iter()
        .find(|(k, _)| *k == BODY_FIELD)
        .or_else(|| fields.iter().find(|(k, _)| *k != DELIVERIES_FIELD))
        .and_then(|(_, v)| bytes(v))
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let before = fields
        .iter()
        .find(|(k, _)| *k == DELIVERIES_FIELD)
        .and_then(|(_, v)| text(v))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let deliveries = u32::try_from(before.saturating_add(counter)).unwrap_or(u32::MAX);
    Delivery {
        body,
        receipt: Receipt::new(RedisReceipt {
            id,
            counter,
            lease_ms: lease.as_millis() as u64,
            ours_until: sent_at + lease,
        }),
        deliveries,
    }
}

/// A flat `[k1, v1, k2, v2, …]` array (RESP2 maps) as pairs, keys as text.
pub(super) fn pairs(v: &Value) -> Vec<(&str, &Value)> {
    match v {
        Value::Array(a) => a
            .chunks_exact(2)
            .filter_map(|kv| text(&kv[0]).map(|k| (k, &kv[1])))
            .collect(),
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v)))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

pub(super) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}
