//! Reading a channel's depth from nsqd's `GET /stats?format=json&topic=T&channel=C`.
//!
//! Two shapes exist: nsqd 1.x answers with the stats object itself; nsqd 0.3.x wrapped it as
//! `{"status_code":200,"status_txt":"OK","data":{…}}`. Both are accepted. `topics` is `null` when the topic
//! filter matches nothing, and `channels` may be `null` too, so every list is optional.
//!
//! nsqd's channel `depth` counts messages waiting to be sent (memory + disk), excluding those in flight and
//! deferred: it is the figure the Microscaling engine and KEDA's NSQ scaler scale on.

use serde::Deserialize;

/// The figures of one channel (or of the topic, while the channel does not exist yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelDepth {
    pub depth: u64,
    pub in_flight: u64,
    pub deferred: u64,
}

#[derive(Deserialize)]
struct Stats {
    topics: Option<Vec<Topic>>,
}

#[derive(Deserialize)]
struct Envelope {
    data: Stats,
}

#[derive(Deserialize)]
struct Topic {
    topic_name: String,
    #[serde(default)]
    depth: i64,
    channels: Option<Vec<Channel>>,
}

#[derive(Deserialize)]
struct Channel {
    channel_name: String,
    #[serde(default)]
    depth: i64,
    #[serde(default)]
    in_flight_count: i64,
    #[serde(default)]
    deferred_count: i64,
}

/// Finds `topic`/`channel` in a `/stats` JSON body.
///
/// A missing topic is depth 0 (nothing was ever published). A topic whose channel does not exist yet reports
/// the topic's own depth: nsqd holds messages at the topic until its first channel appears, and they will all
/// go to that channel.
///
/// # Errors
/// A description when the body is not a `/stats` JSON document in either shape.
pub fn parse_stats(body: &[u8], topic: &str, channel: &str) -> Result<ChannelDepth, String> {
    let stats: Stats = match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => e.data,
        Err(_) => serde_json::from_slice(body)
            .map_err(|e| format!("not an nsqd /stats JSON document ({e})"))?,
    };
    let Some(t) = stats
        .topics
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.topic_name == topic)
    else {
        return Ok(ChannelDepth::default());
    };
    let n = |v: i64| v.max(0) as u64;
    match t
        .channels
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.channel_name == channel)
    {
        Some(c) => Ok(ChannelDepth {
            depth: n(c.depth),
            in_flight: n(c.in_flight_count),
            deferred: n(c.deferred_count),
        }),
        None => Ok(ChannelDepth {
            depth: n(t.depth),
            ..ChannelDepth::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"version":"1.3.0","health":"OK","start_time":1,"topics":[{"topic_name":"t","channels":[{"channel_name":"c","depth":7,"backend_depth":0,"in_flight_count":3,"deferred_count":2,"message_count":12,"requeue_count":0,"timeout_count":0,"client_count":1,"clients":[],"paused":false,"e2e_processing_latency":{"count":0,"percentiles":null}}],"depth":0,"backend_depth":0,"message_count":12,"message_bytes":1,"paused":false,"e2e_processing_latency":{"count":0,"percentiles":null}}],"memory":{},"producers":null}"#;

    #[test]
    fn nsqd_1x_shape() {
        assert_eq!(
            parse_stats(V1.as_bytes(), "t", "c"),
            Ok(ChannelDepth {
                depth: 7,
                in_flight: 3,
                deferred: 2
            })
        );
    }

    #[test]
    fn nsqd_03x_envelope_shape() {
        let body = format!(r#"{{"status_code":200,"status_txt":"OK","data":{V1}}}"#);
        assert_eq!(parse_stats(body.as_bytes(), "t", "c").unwrap().depth, 7);
    }

    #[test]
    fn null_topics_missing_channel_and_garbage() {
        let none =
            r#"{"version":"1.3.0","health":"OK","start_time":1,"topics":null,"producers":null}"#;
        assert_eq!(
            parse_stats(none.as_bytes(), "t", "c"),
            Ok(ChannelDepth::default())
        );
        let no_channel = r#"{"topics":[{"topic_name":"t","depth":5,"channels":null}]}"#;
        assert_eq!(
            parse_stats(no_channel.as_bytes(), "t", "c").unwrap().depth,
            5
        );
        assert!(parse_stats(b"<html>", "t", "c").is_err());
    }
}
