"""nats-py (the NATS project's Python client) on the same JetStream stream as our binaries.

Used by consumer/tests/it/nats_interop.rs and, as the reference client, by consumer/benches/nats.rs.

    nats_client.py read      SERVER STREAM CONSUMER N         prints one JSON list of the N bodies it pulled and acked
    nats_client.py send      SERVER SUBJECT N                 publishes N plain (non-envelope) bodies, each acked
    nats_client.py bench-pub SERVER SUBJECT N SIZE BATCH      publishes N bodies of SIZE bytes, BATCH acks in flight
    nats_client.py bench-sub SERVER STREAM CONSUMER N BATCH   pulls N messages BATCH at a time and acks each

The bench modes print one JSON object: {"messages": N, "seconds": wall time of the loop}.
"""
import asyncio
import json
import sys
import time

import nats
from nats.errors import TimeoutError as NatsTimeout


async def pull(js, stream, consumer):
    return await js.pull_subscribe_bind(durable=consumer, stream=stream)


async def main():
    mode, server = sys.argv[1], sys.argv[2]
    nc = await nats.connect(server)
    js = nc.jetstream()
    if mode == "read":
        stream, consumer, want = sys.argv[3], sys.argv[4], int(sys.argv[5])
        sub = await pull(js, stream, consumer)
        bodies = []
        deadline = time.time() + 30
        while len(bodies) < want and time.time() < deadline:
            try:
                msgs = await sub.fetch(want - len(bodies), timeout=1)
            except NatsTimeout:
                continue
            for m in msgs:
                bodies.append(m.data.decode())
                await m.ack_sync()
        print(json.dumps(bodies))
    elif mode == "send":
        subject, n = sys.argv[3], int(sys.argv[4])
        for i in range(n):
            await js.publish(subject, f"plain message {i} from nats-py".encode())
    elif mode == "bench-pub":
        subject, n, size, batch = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        body = b"x" * size
        start = time.perf_counter()
        sent = 0
        while sent < n:
            k = min(batch, n - sent)
            await asyncio.gather(*(js.publish(subject, body) for _ in range(k)))
            sent += k
        print(json.dumps({"messages": sent, "seconds": time.perf_counter() - start}))
    elif mode == "bench-sub":
        stream, consumer, n, batch = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
        sub = await pull(js, stream, consumer)
        start = time.perf_counter()
        got = 0
        while got < n:
            try:
                msgs = await sub.fetch(min(batch, n - got), timeout=5)
            except NatsTimeout:
                break
            for m in msgs:
                await m.ack()
            got += len(msgs)
        print(json.dumps({"messages": got, "seconds": time.perf_counter() - start}))
    else:
        sys.exit(f"unknown mode {mode}")
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
