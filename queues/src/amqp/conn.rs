//! The broker side of the AMQP queue: connections and channels (made lazily, remade after a failure), the
//! queue's declaration, the consumer, publishing with confirms, and the ready and unacked counts.

use super::*;

impl AmqpQueue {
    pub(super) fn addr(&self) -> String {
        format!("{}:{}", self.url.host, self.url.port)
    }

    pub(super) fn err(&self, e: &lapin::Error, op: &'static str) -> AmqpError {
        AmqpError::from_lapin(e, op, &self.addr())
    }

    /// Connects, opens a channel and declares the queue (passively with [`OpenMode::Existing`]).
    pub(super) async fn connect(&self, role: &str) -> Result<Link, AmqpError> {
        let uri = lapin::uri::AMQPUri {
            scheme: if self.url.tls {
                lapin::uri::AMQPScheme::AMQPS
            } else {
                lapin::uri::AMQPScheme::AMQP
            },
            authority: lapin::uri::AMQPAuthority {
                userinfo: lapin::uri::AMQPUserInfo {
                    username: self.url.user.clone(),
                    password: self.password.expose().to_string(),
                },
                host: self
                    .url
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: self.url.port,
            },
            vhost: self.url.vhost.clone(),
            query: lapin::uri::AMQPQueryString {
                // Seconds: a broker that vanishes without closing the socket is noticed within two beats.
                heartbeat: Some(10),
                connection_timeout: Some(CONNECT_TIMEOUT.as_millis() as u64),
                ..Default::default()
            },
        };
        let props = ConnectionProperties::default()
            .with_connection_name(format!("queue-workload {role}").into());
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let connect = async {
            let conn = lapin::DefaultConnectionBuilder::new()
                .map_err(|e| self.err(&e, "the connection"))?
                .with_uri(uri)
                .with_properties(props)
                .with_tls_config(tls)
                .connect()
                .await
                .map_err(|e| self.err(&e, "the connection"))?;
            self.ensure_queue(&conn).await?;
            let channel = self.channel(&conn).await?;
            Ok(Link { conn, channel })
        };
        tokio::time::timeout(CONNECT_TIMEOUT * 2, connect)
            .await
            .map_err(|_| AmqpError::Timeout {
                what: "the connection",
                secs: (CONNECT_TIMEOUT * 2).as_secs(),
                blocked: false,
            })?
    }

    pub(super) async fn channel(&self, conn: &Connection) -> Result<Channel, AmqpError> {
        conn.create_channel()
            .await
            .map_err(|e| self.err(&e, "a channel"))
    }

    /// Declares the queue: passively, and when it is missing (and this open may create it) durably, one
    /// client at a time. Why the lock: when a producer and consumers start together, their declares of a new
    /// quorum queue race, and RabbitMQ 3.10 answered one of them 541 INTERNAL_ERROR, which closes that
    /// client's whole connection (it recovered on its retry, but logged an error and counted a failure). The
    /// lock is an exclusive queue: a second connection declaring it gets 405 RESOURCE_LOCKED and waits.
    pub(super) async fn ensure_queue(&self, conn: &Connection) -> Result<(), AmqpError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let lock_name: String = format!(
            "{}.declare-lock",
            self.url.queue.chars().take(200).collect::<String>()
        );
        loop {
            // A refused declare closes its channel, so each attempt has its own.
            let ch = self.channel(conn).await?;
            match self.declare(&ch, true).await {
                Ok(_) => {
                    let _ = ch.close(200, "OK".into()).await;
                    return Ok(());
                }
                Err(AmqpError::Refused { code: 404, .. }) if self.mode == OpenMode::Create => {}
                Err(e) => return Err(e),
            }
            let lock = self.channel(conn).await?;
            let locked = lock
                .queue_declare(
                    lock_name.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match locked {
                Ok(_) => {
                    let made = self.declare(&lock, false).await;
                    let _ = lock
                        .queue_delete(lock_name.as_str().into(), Default::default())
                        .await;
                    let _ = lock.close(200, "OK".into()).await;
                    return made.map(|_| ());
                }
                Err(e) => match self.err(&e, "queue.declare (creation lock)") {
                    AmqpError::Refused { code: 405, .. } if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return Err(other),
                },
            }
        }
    }

    /// Declares the queue, passively (it must exist) or durably (creating it); returns its ready count.
    pub(super) async fn declare(&self, channel: &Channel, passive: bool) -> Result<u64, AmqpError> {
        let mut args = FieldTable::default();
        if self.url.queue_type == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let options = QueueDeclareOptions {
            passive,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let q = channel
            .queue_declare(self.url.queue.as_str().into(), options, args)
            .await
            .map_err(|e| self.err(&e, "queue.declare"))?;
        Ok(u64::from(q.message_count()))
    }

    /// The consumer's link and consumer, (re)made when missing or dead. What an old channel held is the
    /// broker's again (it requeued it), so the lease table starts a new generation.
    pub(super) async fn ensure_consumer(
        &self,
        side: &mut ConsumerSide,
        max: usize,
    ) -> Result<(), AmqpError> {
        if side.link.as_ref().is_some_and(Link::alive) && side.consumer.is_some() {
            return Ok(());
        }
        side.link = None;
        side.consumer = None;
        if side.prefetch == 0 {
            let said = self.window.load(std::sync::atomic::Ordering::Relaxed);
            let window = if said > 0 { said } else { max };
            side.prefetch = window.clamp(1, usize::from(u16::MAX)) as u16;
        }
        let link = self.connect("consumer").await?;
        link.channel
            .basic_qos(side.prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| self.err(&e, "basic.qos"))?;
        let consumer = link
            .channel
            .basic_consume(
                self.url.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.err(&e, "basic.consume"))?;
        lock(&self.leases).new_channel(link.channel.clone());
        if !side.sweeping {
            side.sweeping = true;
            leases::spawn_sweeper(Arc::downgrade(&self.leases));
        }
        side.link = Some(link);
        side.consumer = Some(consumer);
        Ok(())
    }

    pub(super) async fn publish_inner(&self, bodies: &[Vec<u8>]) -> Result<(), AmqpError> {
        if let Some(b) = bodies.iter().find(|b| b.len() > self.url.max_msg_size) {
            return Err(AmqpError::TooLarge {
                size: b.len(),
                max: self.url.max_msg_size,
            });
        }
        let mut side = self.producer.lock().await;
        if !side.as_ref().is_some_and(Link::alive) {
            *side = None;
            let link = self.connect("producer").await?;
            link.channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.err(&e, "confirm.select"))?;
            *side = Some(link);
        }
        let Some(link) = side.as_ref() else {
            return Ok(());
        };
        let result = self.publish_on(link, bodies).await;
        if result.is_err() {
            *side = None;
        }
        result
    }

    pub(super) async fn publish_on(
        &self,
        link: &Link,
        bodies: &[Vec<u8>],
    ) -> Result<(), AmqpError> {
        let queue: lapin::types::ShortString = self.url.queue.as_str().into();
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let mut props = BasicProperties::default().with_delivery_mode(2);
        // An expiring queue (heartbeats): per-message TTL (`expiration`, milliseconds as text), which quorum
        // queues honour from RabbitMQ 3.10 on. Per message rather than the queue's `x-message-ttl`, so that a
        // queue declared earlier without it is not refused with PRECONDITION_FAILED.
        if let Some(after) = self.url.expiry {
            props = props.with_expiration(after.as_millis().to_string().into());
        }
        // All the batch's frames go out in one go (join_all polls in order, so the confirm sequence numbers
        // follow the bodies); then every confirm is awaited.
        let sent = futures_util::future::join_all(bodies.iter().map(|b| {
            link.channel
                .basic_publish("".into(), queue.clone(), options, b, props.clone())
        }));
        let blocked = || link.conn.status().blocked();
        let timeout = |what| AmqpError::Timeout {
            what,
            secs: PUBLISH_TIMEOUT.as_secs(),
            blocked: blocked(),
        };
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let sent = tokio::time::timeout_at(deadline, sent)
            .await
            .map_err(|_| timeout("the publish"))?;
        let mut confirms = Vec::with_capacity(sent.len());
        for s in sent {
            confirms.push(s.map_err(|e| self.err(&e, "basic.publish"))?);
        }
        let confirmed = tokio::time::timeout_at(deadline, futures_util::future::join_all(confirms))
            .await
            .map_err(|_| timeout("the publish confirms"))?;
        let mut nacked = 0;
        for c in confirmed {
            match c.map_err(|e| self.err(&e, "basic.publish"))? {
                lapin::Confirmation::Ack(None) => {}
                lapin::Confirmation::Ack(Some(returned)) => {
                    return Err(AmqpError::Returned(
                        format!("{} {}", returned.reply_code, returned.reply_text),
                        self.url.queue.clone(),
                    ));
                }
                lapin::Confirmation::Nack(_) => nacked += 1,
                lapin::Confirmation::NotRequested => {
                    return Err(AmqpError::Unreachable {
                        addr: self.addr(),
                        reason: "the channel is not in confirm mode".into(),
                    });
                }
            }
        }
        if nacked > 0 {
            return Err(AmqpError::Nacked(nacked));
        }
        Ok(())
    }

    /// The ready count, from a passive declare on the admin link (made, or remade, on demand).
    pub(super) async fn ready(&self) -> Result<u64, AmqpError> {
        let mut side = self.admin.lock().await;
        if !side.as_ref().is_some_and(Link::alive) {
            *side = None;
            *side = Some(self.connect("depth").await?);
        }
        let Some(link) = side.as_ref() else {
            return Ok(0);
        };
        let declared =
            tokio::time::timeout(CONNECT_TIMEOUT, self.declare(&link.channel, true)).await;
        match declared {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => {
                *side = None;
                Err(e)
            }
            Err(_) => {
                *side = None;
                Err(AmqpError::Timeout {
                    what: "queue.declare (passive)",
                    secs: CONNECT_TIMEOUT.as_secs(),
                    blocked: false,
                })
            }
        }
    }

    /// The unacked count from the management API; `None` (logged once) when it cannot be had.
    pub(super) async fn unacked(&self) -> Option<u64> {
        let m = self.management.as_ref()?;
        match m.queue_stats().await {
            Ok(s) => s.unacked,
            Err(e) => {
                if !self.management_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "no unacked count from the management API: depth reports the ready count only (set management=off to silence this)");
                } else {
                    tracing::debug!(error = %e, "no unacked count from the management API");
                }
                None
            }
        }
    }
}
