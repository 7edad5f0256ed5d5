//! The consumer side of [`NsqQueue`]: one or more subscribed connections (`connections=N` in the URL), the
//! consumer's RDY window split across them, and FIN/REQ/TOUCH sent back on the connection each message came
//! on.
//!
//! Why several: nsqd serves each connection on one goroutine, so one connection caps the rate a consumer
//! gets; nsqd's own clients (go-nsq, `bench_reader`) open several and split their max-in-flight across them.
//! Here the split is exact (shares sum to the window), so nsqd never has more in flight to this process than
//! the consumer asked for, whatever the number of connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::codec::{self, MessageId};
use super::conn::{Conn, Tagged, await_reply};
use super::error::NsqError;
use super::{CLOSE_TIMEOUT, NsqQueue, NsqReceipt, nsq_err};
use crate::{Delivery, QueueError, Receipt};

/// One subscribed connection and the RDY count sent on it.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    rdy: u32,
}

/// The consumer's connections, made on the first receive. Every connection forwards its messages, tagged
/// with its generation, to one channel.
pub(super) struct ConsumerSide {
    slots: Vec<Slot>,
    tx: mpsc::UnboundedSender<Tagged>,
    rx: mpsc::UnboundedReceiver<Tagged>,
    /// The window the consumer has asked for (held + max): split across the live connections.
    window: u32,
    stopped: bool,
}

impl ConsumerSide {
    pub(super) fn new(connections: u16) -> ConsumerSide {
        let (tx, rx) = mpsc::unbounded_channel();
        ConsumerSide {
            slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            tx,
            rx,
            window: 0,
            stopped: false,
        }
    }
}

/// Splits `window` over `n` connections exactly: the first `window % n` get one more.
fn share(window: u32, n: usize, i: usize) -> u32 {
    let n = n.max(1) as u32;
    window / n + u32::from((i as u32) < window % n)
}

impl NsqQueue {
    /// (Re)makes the consumer's missing or dead connections. Messages held from a dead connection are
    /// forgotten here (nsqd redelivers them after their timeout; they could not be FIN'd on another
    /// connection). Fails only when no connection is up afterwards.
    async fn consumer_conns(
        &self,
        side: &mut ConsumerSide,
        lease: Duration,
    ) -> Result<(), NsqError> {
        let mut changed = false;
        let mut dead = Vec::new();
        for slot in &mut side.slots {
            if let Some(c) = slot.conn.as_ref().filter(|c| !c.is_alive()) {
                dead.push(c.generation);
                slot.conn = None;
                slot.rdy = 0;
                changed = true;
            }
        }
        if !dead.is_empty() {
            self.held_map()
                .retain(|_, (generation, _)| !dead.contains(generation));
        }
        let mut last_err = None;
        if side.slots.iter().any(|s| s.conn.is_none()) {
            let (tcp, _) = self.nsqd_addrs().await?;
            for slot in side.slots.iter_mut().filter(|s| s.conn.is_none()) {
                let mut opts = self.options(&tcp);
                opts.msg_timeout = Some(lease);
                opts.subscribe = Some((&self.url.topic, &self.url.channel, side.tx.clone()));
                match Conn::connect(opts).await {
                    Ok(c) => {
                        slot.conn = Some(Arc::new(c));
                        changed = true;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
        }
        if changed {
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) =
                side.slots.iter().filter_map(|s| s.conn.clone()).collect();
        }
        match last_err {
            Some(e) if side.slots.iter().all(|s| s.conn.is_none()) => Err(e),
            Some(e) => {
                tracing::debug!(error = %e, "an nsqd connection could not be made again; going on with the others");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Sends each live connection its share of the window, when it changed.
    async fn spread_rdy(&self, side: &mut ConsumerSide) -> Result<(), NsqError> {
        let live: Vec<usize> = (0..side.slots.len())
            .filter(|&i| side.slots[i].conn.is_some())
            .collect();
        let window = side.window;
        for (k, &i) in live.iter().enumerate() {
            let want = share(window, live.len(), k);
            let slot = &mut side.slots[i];
            let Some(conn) = slot.conn.as_ref() else {
                continue;
            };
            if slot.rdy != want {
                let mut cmd = Vec::new();
                codec::encode_rdy(&mut cmd, want);
                conn.send(&cmd).await?;
                slot.rdy = want;
            }
        }
        Ok(())
    }

    pub(super) async fn receive_inner(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut side = self.consumer.lock().await;
        if side.stopped || max == 0 {
            return Ok(Vec::new());
        }
        self.consumer_conns(&mut side, lease)
            .await
            .map_err(nsq_err)?;
        let live: Vec<(u64, u32)> = side
            .slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .map(|c| {
                let max_rdy = match c.negotiated.max_rdy_count {
                    0 => codec::DEFAULT_MAX_RDY_COUNT,
                    n => n,
                };
                (c.generation, max_rdy)
            })
            .collect();
        // Each connection's share may not exceed nsqd's max RDY count.
        let cap = live.iter().map(|(_, m)| *m as usize).min().unwrap_or(0) * live.len();
        let window = (self.held_map().len() + max).min(cap) as u32;
        side.window = side.window.max(window).min(cap as u32);
        self.spread_rdy(&mut side).await.map_err(nsq_err)?;
        let is_live = |g: u64| live.iter().any(|(l, _)| *l == g);
        // Messages of a connection that has since died are dropped (see `consumer_conns`).
        let mut got = Vec::new();
        while got.len() < max {
            match side.rx.try_recv() {
                Ok(m) if is_live(m.0) => got.push(m),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if got.is_empty() && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(Some(m)) = tokio::time::timeout_at(deadline, side.rx.recv()).await {
                if is_live(m.0) {
                    got.push(m);
                    break;
                }
            }
            while !got.is_empty() && got.len() < max {
                match side.rx.try_recv() {
                    Ok(m) if is_live(m.0) => got.push(m),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let mut held = self.held_map();
        Ok(got
            .into_iter()
            .map(|(generation, m)| {
                held.insert(m.id.0, (generation, m.attempts));
                Delivery {
                    body: m.body,
                    receipt: Receipt::new(NsqReceipt {
                        generation,
                        id: m.id.0,
                        attempts: m.attempts,
                    }),
                    deliveries: u32::from(m.attempts),
                }
            })
            .collect())
    }

    /// Sends one command per receipt still held on a live connection, on that connection; returns (sent,
    /// stale, a flag per receipt). `settle` (FIN, REQ) ends the hold; TOUCH keeps it.
    ///
    /// A connection whose write fails is broken: nsqd puts back what was in flight on it, so its receipts
    /// count as stale, and the others as sent. Failing the whole call instead had the caller send them all
    /// again, and those already sent on a sound connection were no longer held: counted lost, their messages
    /// gone, a consumer with `--count` waited for ever.
    pub(super) async fn per_receipt(
        &self,
        receipts: &[Receipt],
        settle: bool,
        mut encode: impl FnMut(&mut Vec<u8>, &MessageId),
    ) -> Result<(u64, u64, Vec<bool>), QueueError> {
        let conns: Vec<Arc<Conn>> = self
            .live_conns()
            .into_iter()
            .filter(|c| c.is_alive())
            .collect();
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
        // The connection each receipt's command goes out on, if it is still held.
        let mut on = Vec::with_capacity(receipts.len());
        {
            let mut held = self.held_map();
            for r in receipts {
                let NsqReceipt {
                    generation,
                    id,
                    attempts,
                } = r.get::<NsqReceipt>()?;
                let at = conns.iter().position(|c| c.generation == *generation);
                let ours = at.is_some() && held.get(id) == Some(&(*generation, *attempts));
                let at = at.filter(|_| ours);
                if let Some(at) = at {
                    if settle {
                        held.remove(id);
                    }
                    encode(&mut bufs[at], &MessageId(*id));
                }
                on.push(at);
            }
        }
        let mut broken = vec![false; conns.len()];
        for (i, (conn, buf)) in conns.iter().zip(&bufs).enumerate() {
            if !buf.is_empty()
                && let Err(e) = conn.send(buf).await
            {
                tracing::warn!(error = %nsq_err(e), "a connection failed mid-settle: nsqd puts back what it had in flight");
                broken[i] = true;
            }
        }
        let flags: Vec<bool> = on.iter().map(|at| at.is_some_and(|i| !broken[i])).collect();
        let sent = flags.iter().filter(|&&f| f).count() as u64;
        Ok((sent, receipts.len() as u64 - sent, flags))
    }

    /// `RDY 0` and `CLS` on every connection; once each has answered `CLOSE_WAIT`, everything nsqd sent has
    /// been read, and what was never handed out goes back (REQ 0) on the connection it came on.
    pub(super) async fn stop_inner(&self) -> Result<(), QueueError> {
        let mut side = self.consumer.lock().await;
        side.stopped = true;
        let conns: Vec<Arc<Conn>> = side
            .slots
            .iter()
            .filter_map(|s| s.conn.clone())
            .filter(|c| c.is_alive())
            .collect();
        let mut first_err = None;
        let mut waits = Vec::new();
        for conn in &conns {
            let mut cmd = Vec::new();
            codec::encode_rdy(&mut cmd, 0);
            codec::encode_cls(&mut cmd);
            // RDY and CLS in one write; only CLS is answered.
            match conn.send_request(&cmd).await {
                Ok(rx) => waits.push(rx),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for rx in waits {
            match await_reply(rx, "CLS", CLOSE_TIMEOUT).await {
                Ok(answer) if answer != b"CLOSE_WAIT" => {
                    tracing::debug!(answer = %String::from_utf8_lossy(&answer), "unexpected answer to CLS");
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let mut bufs: HashMap<u64, Vec<u8>> = HashMap::new();
        while let Ok((generation, m)) = side.rx.try_recv() {
            codec::encode_req(bufs.entry(generation).or_default(), &m.id, 0);
        }
        for conn in &conns {
            if let Some(buf) = bufs.get(&conn.generation)
                && let Err(e) = conn.send(buf).await
            {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(nsq_err(e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_sum_to_the_window() {
        for window in [0, 1, 2, 5, 200, 2501] {
            for n in 1..=5 {
                let total: u32 = (0..n).map(|i| share(window, n, i)).sum();
                assert_eq!(total, window, "window {window} over {n}");
                let (lo, hi) = (share(window, n, n - 1), share(window, n, 0));
                assert!(hi - lo <= 1, "window {window} over {n}: {lo}..{hi}");
            }
        }
    }
}
