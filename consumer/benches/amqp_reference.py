"""The reference client of benches/amqp.rs: pika (pinned in scripts/test), on the same RabbitMQ queue type.

    amqp_reference.py pub PORT QUEUE N SIZE    publishes N persistent messages of SIZE bytes with publisher
                                               confirms (pika's blocking channel waits for each confirm)
    amqp_reference.py sub PORT QUEUE N BATCH   consumes N messages with prefetch 2 x BATCH, acking every BATCH
                                               with one multiple ack

Declares the queue as our backend does (durable, x-queue-type=quorum). Prints one JSON line: {"messages": N,
"seconds": S}, S being its own loop's time (the interpreter's start-up is not held against it).
"""
import json
import sys
import time

import pika


def main():
    mode, port, queue, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    params = pika.ConnectionParameters(host="127.0.0.1", port=port,
                                       credentials=pika.PlainCredentials("guest", "guest"))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
    done = 0
    if mode == "pub":
        body = b"." * int(sys.argv[5])
        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        ch.confirm_delivery()
        start = time.monotonic()
        for _ in range(n):
            ch.basic_publish("", queue, body, props)
            done += 1
    elif mode == "sub":
        batch = int(sys.argv[5])
        ch.basic_qos(prefetch_count=2 * batch)
        start = time.monotonic()
        last = None
        for method, _, _ in ch.consume(queue, inactivity_timeout=5):
            if method is None:
                break
            done += 1
            last = method.delivery_tag
            if done % batch == 0 or done == n:
                ch.basic_ack(last, multiple=True)
            if done == n:
                break
        ch.cancel()
    else:
        sys.exit(f"unknown mode {mode}")
    seconds = time.monotonic() - start
    conn.close()
    print(json.dumps({"messages": done, "seconds": seconds}))


if __name__ == "__main__":
    main()
