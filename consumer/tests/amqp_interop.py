"""Python's pika (the AMQP 0-9-1 client RabbitMQ's own tutorials use; pinned) on the same RabbitMQ queue as our
binaries, for amqp_interop.rs. The queue is declared as ours declares it (durable, x-queue-type=quorum), so
either side may create it first.

    amqp_interop.py read  PORT QUEUE N       consumes N messages (manual acks), prints one JSON list of
                                             [x-delivery-count or null, redelivered, body] triples
    amqp_interop.py send  PORT QUEUE RUN N   publishes N format-1 envelopes of run RUN (hex), persistent, each
                                             confirmed by the broker (publisher confirms), then prints a
                                             producer summary line in our stats contract, for `audit`
    amqp_interop.py plain PORT QUEUE N       publishes N plain bodies (b"hello I"), not ours, confirmed
"""
import json
import sys
import time

import pika

PRODUCER_ID = 9


def channel(port, queue):
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=3,
        retry_delay=1,
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
    return conn, ch


def main():
    mode, port, queue = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn, ch = channel(port, queue)
    persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    if mode == "read":
        want = int(sys.argv[4])
        ch.basic_qos(prefetch_count=32)
        got = []
        deadline = time.time() + 30
        for method, props, body in ch.consume(queue, inactivity_timeout=0.5):
            if len(got) >= want or time.time() > deadline:
                break
            if method is None:
                continue
            count = (props.headers or {}).get("x-delivery-count")
            got.append([count, method.redelivered, body.decode()])
            ch.basic_ack(method.delivery_tag)
        ch.cancel()
        print(json.dumps(got))
    elif mode == "send":
        run, n = int(sys.argv[4], 16), int(sys.argv[5])
        # With confirms on, basic_publish returns only once the broker confirmed the message (and raises
        # if it nacked it), so every message counted below was confirmed.
        ch.confirm_delivery()
        now = int(time.time() * 1e6)
        for seq in range(n):
            body = f"mw1 {run:016x} {PRODUCER_ID} {seq} {now} {now} -".encode()
            ch.basic_publish("", queue, body, persistent, mandatory=True)
        print(json.dumps({"role": "producer", "kind": "summary", "run_id": f"{run:016x}",
                          "producer_id": PRODUCER_ID, "sent": n, "seq_end": n}))
    elif mode == "plain":
        ch.confirm_delivery()
        for i in range(int(sys.argv[4])):
            ch.basic_publish("", queue, f"hello {i}".encode(), persistent, mandatory=True)
    else:
        sys.exit(f"unknown mode {mode}")
    conn.close()


if __name__ == "__main__":
    main()
