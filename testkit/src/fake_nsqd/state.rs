//! The fake nsqd's topics, channels and clients, and the rules that move messages between them, after
//! nsqd's `topic.go` and `channel.go`:
//! - a topic copies each message to every channel; while it has no channel it keeps them (topic depth), and
//!   its first channel gets them;
//! - a channel hands a message to a subscribed client whose in-flight count is below its RDY, round robin,
//!   and `attempts` goes up on each delivery;
//! - an in-flight message goes back to the queue when its client's `msg_timeout` passes without FIN, REQ or
//!   TOUCH, even when the client disconnected (nsqd does not requeue at once on disconnect);
//! - channel `depth` excludes in-flight and deferred messages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use queues::nsq::codec::{self, Message, MessageId};
use tokio::sync::mpsc;

/// A message as the fake keeps it; the body is shared between the channels of a topic.
#[derive(Clone, Debug)]
pub struct Msg {
    pub id: MessageId,
    pub body: Arc<Vec<u8>>,
    pub timestamp_ns: i64,
    pub attempts: u16,
}

#[derive(Debug)]
pub struct InFlight {
    pub msg: Msg,
    pub client: u64,
    pub deadline: Instant,
}

#[derive(Debug, Default)]
pub struct Channel {
    pub queue: VecDeque<Msg>,
    pub in_flight: HashMap<MessageId, InFlight>,
    pub deferred: Vec<(Instant, Msg)>,
    pub clients: Vec<u64>,
    pub next_client: usize,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
}

#[derive(Debug, Default)]
pub struct Topic {
    /// Messages kept while the topic has no channel.
    pub backlog: VecDeque<Msg>,
    pub channels: BTreeMap<String, Channel>,
    pub message_count: u64,
    pub message_bytes: u64,
}

/// A connected client as the state sees it.
#[derive(Debug)]
pub struct Client {
    /// Bytes to write to the client's socket, in order.
    pub tx: mpsc::UnboundedSender<Vec<u8>>,
    pub rdy: u32,
    pub in_flight: u32,
    pub msg_timeout: Duration,
    pub sub: Option<(String, String)>,
    pub closing: bool,
    /// What `/stats` shows of it (nsqd's `ClientV2Stats`): who it said it is in IDENTIFY, where it connects
    /// from, when, and what it did.
    pub info: ClientInfo,
}

/// A client as `/stats` lists it under its channel.
#[derive(Debug, Default, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub remote_address: String,
    /// Seconds since the epoch when it connected.
    pub connect_ts: i64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
}

#[derive(Debug, Default)]
pub struct State {
    pub topics: BTreeMap<String, Topic>,
    pub clients: HashMap<u64, Client>,
    next_client: u64,
    next_msg: u64,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Why a FIN, REQ or TOUCH failed (nsqd's wording).
pub fn not_in_flight() -> &'static str {
    "ID not in flight"
}

impl State {
    pub fn add_client(&mut self, tx: mpsc::UnboundedSender<Vec<u8>>, msg_timeout: Duration) -> u64 {
        self.next_client += 1;
        let id = self.next_client;
        self.clients.insert(
            id,
            Client {
                tx,
                rdy: 0,
                in_flight: 0,
                msg_timeout,
                sub: None,
                closing: false,
                info: ClientInfo {
                    connect_ts: now_ns() / 1_000_000_000,
                    ..ClientInfo::default()
                },
            },
        );
        id
    }

    /// A client went away: it leaves its channel, and its in-flight messages stay in flight until their
    /// timeout, as in nsqd.
    pub fn remove_client(&mut self, id: u64) {
        if let Some(Client {
            sub: Some((t, c)), ..
        }) = self.clients.remove(&id)
            && let Some(ch) = self.topics.get_mut(&t).and_then(|t| t.channels.get_mut(&c))
        {
            ch.clients.retain(|&x| x != id);
        }
    }

    pub fn topic(&mut self, name: &str) -> &mut Topic {
        self.topics.entry(name.to_string()).or_default()
    }

    /// Gets or creates a channel; a topic's first channel takes the messages the topic kept.
    pub fn channel(&mut self, topic: &str, channel: &str) -> &mut Channel {
        let t = self.topics.entry(topic.to_string()).or_default();
        if !t.channels.contains_key(channel) {
            let mut ch = Channel::default();
            if t.channels.is_empty() {
                ch.message_count += t.backlog.len() as u64;
                ch.queue = std::mem::take(&mut t.backlog);
            }
            t.channels.insert(channel.to_string(), ch);
        }
        t.channels.get_mut(channel).expect("inserted above")
    }

    /// Publishes bodies to a topic (deferred by `defer` when non-zero), then delivers what it can.
    pub fn publish(&mut self, topic: &str, bodies: Vec<Vec<u8>>, defer: Duration) {
        let ts = now_ns();
        let mut msgs = Vec::with_capacity(bodies.len());
        for body in bodies {
            self.next_msg += 1;
            msgs.push(Msg {
                id: MessageId::from_u64(self.next_msg),
                body: Arc::new(body),
                timestamp_ns: ts,
                attempts: 0,
            });
        }
        let t = self.topic(topic);
        t.message_count += msgs.len() as u64;
        t.message_bytes += msgs.iter().map(|m| m.body.len() as u64).sum::<u64>();
        if t.channels.is_empty() {
            t.backlog.extend(msgs);
            return;
        }
        let at = Instant::now() + defer;
        for ch in t.channels.values_mut() {
            ch.message_count += msgs.len() as u64;
            for m in &msgs {
                if defer.is_zero() {
                    ch.queue.push_back(m.clone());
                } else {
                    ch.deferred.push((at, m.clone()));
                }
            }
        }
        self.dispatch_topic(topic);
    }

    pub fn dispatch_topic(&mut self, topic: &str) {
        let names: Vec<String> = match self.topics.get(topic) {
            Some(t) => t.channels.keys().cloned().collect(),
            None => return,
        };
        for c in names {
            self.dispatch(topic, &c);
        }
    }

    /// Hands queued messages to ready clients of the channel, round robin.
    pub fn dispatch(&mut self, topic: &str, channel: &str) {
        let State {
            topics, clients, ..
        } = self;
        let Some(ch) = topics
            .get_mut(topic)
            .and_then(|t| t.channels.get_mut(channel))
        else {
            return;
        };
        let mut out: HashMap<u64, Vec<u8>> = HashMap::new();
        while !ch.queue.is_empty() && !ch.clients.is_empty() {
            let mut progressed = false;
            for _ in 0..ch.clients.len() {
                ch.next_client = (ch.next_client + 1) % ch.clients.len();
                let cid = ch.clients[ch.next_client];
                let Some(c) = clients.get_mut(&cid) else {
                    continue;
                };
                if c.closing || c.in_flight >= c.rdy {
                    continue;
                }
                let Some(mut msg) = ch.queue.pop_front() else {
                    break;
                };
                msg.attempts = msg.attempts.saturating_add(1);
                c.in_flight += 1;
                c.info.message_count += 1;
                codec::encode_message(
                    out.entry(cid).or_default(),
                    &Message {
                        timestamp_ns: msg.timestamp_ns,
                        attempts: msg.attempts,
                        id: msg.id,
                        body: msg.body.to_vec(),
                    },
                );
                ch.in_flight.insert(
                    msg.id,
                    InFlight {
                        msg,
                        client: cid,
                        deadline: Instant::now() + c.msg_timeout,
                    },
                );
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        for (cid, bytes) in out {
            if let Some(c) = clients.get(&cid) {
                let _ = c.tx.send(bytes);
            }
        }
    }

    /// Looks up the in-flight message `id` of `client`'s channel, checking the client owns it.
    fn owned(
        &mut self,
        client: u64,
        id: &MessageId,
    ) -> Result<(&mut Channel, (String, String)), String> {
        let sub = self
            .clients
            .get(&client)
            .and_then(|c| c.sub.clone())
            .ok_or_else(|| not_in_flight().to_string())?;
        let ch = self
            .topics
            .get_mut(&sub.0)
            .and_then(|t| t.channels.get_mut(&sub.1))
            .ok_or_else(|| not_in_flight().to_string())?;
        match ch.in_flight.get(id) {
            None => Err(not_in_flight().to_string()),
            Some(f) if f.client != client => Err("client does not own message".to_string()),
            Some(_) => Ok((ch, sub)),
        }
    }

    pub fn finish(&mut self, client: u64, id: &MessageId) -> Result<(), String> {
        let (ch, sub) = self.owned(client, id)?;
        ch.in_flight.remove(id);
        if let Some(c) = self.clients.get_mut(&client) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.info.finish_count += 1;
        }
        self.dispatch(&sub.0, &sub.1);
        Ok(())
    }

    pub fn requeue(&mut self, client: u64, id: &MessageId, delay: Duration) -> Result<(), String> {
        let (ch, sub) = self.owned(client, id)?;
        if let Some(f) = ch.in_flight.remove(id) {
            ch.requeue_count += 1;
            if delay.is_zero() {
                ch.queue.push_back(f.msg);
            } else {
                ch.deferred.push((Instant::now() + delay, f.msg));
            }
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.info.requeue_count += 1;
        }
        self.dispatch(&sub.0, &sub.1);
        Ok(())
    }

    pub fn touch(&mut self, client: u64, id: &MessageId) -> Result<(), String> {
        let timeout = self
            .clients
            .get(&client)
            .map(|c| c.msg_timeout)
            .unwrap_or_default();
        let (ch, _) = self.owned(client, id)?;
        if let Some(f) = ch.in_flight.get_mut(id) {
            f.deadline = Instant::now() + timeout;
        }
        Ok(())
    }

    /// Requeues timed-out in-flight messages and releases due deferred ones (nsqd's queue scan loop).
    pub fn scan(&mut self, now: Instant) {
        let mut touched = Vec::new();
        for (tn, t) in self.topics.iter_mut() {
            for (cn, ch) in t.channels.iter_mut() {
                let expired: Vec<MessageId> = ch
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                let mut changed = !expired.is_empty();
                for id in expired {
                    if let Some(f) = ch.in_flight.remove(&id) {
                        ch.timeout_count += 1;
                        if let Some(c) = self.clients.get_mut(&f.client) {
                            c.in_flight = c.in_flight.saturating_sub(1);
                        }
                        ch.queue.push_back(f.msg);
                    }
                }
                if ch.deferred.iter().any(|(at, _)| *at <= now) {
                    changed = true;
                    let (due, later): (Vec<_>, Vec<_>) =
                        ch.deferred.drain(..).partition(|(at, _)| *at <= now);
                    ch.deferred = later;
                    ch.queue.extend(due.into_iter().map(|(_, m)| m));
                }
                if changed {
                    touched.push((tn.clone(), cn.clone()));
                }
            }
        }
        for (t, c) in touched {
            self.dispatch(&t, &c);
        }
    }

    /// What nsqd does on a clean exit: in-flight and deferred messages are written back with the queue, so
    /// they are all waiting again after a restart.
    pub fn persist_for_restart(&mut self) {
        self.clients.clear();
        for t in self.topics.values_mut() {
            for ch in t.channels.values_mut() {
                ch.clients.clear();
                let mut back: Vec<Msg> = ch.in_flight.drain().map(|(_, f)| f.msg).collect();
                back.extend(ch.deferred.drain(..).map(|(_, m)| m));
                back.sort_by_key(|m| m.id);
                ch.queue.extend(back);
            }
        }
    }
}
