"""Python's redis (redis-py, pinned) on the same Redis stream as our binaries, for redis_interop.rs.

    redis_interop.py read  PORT STREAM N       reads N entries in the stream's consumer group (named like
                                               the stream, as our consumers use it), acks them, and prints
                                               one JSON list of [delivery count, fields] pairs
    redis_interop.py send  PORT STREAM RUN N   adds N format-1 envelopes of run RUN (hex) in a `body` field
    redis_interop.py plain PORT STREAM N       adds N plain entries ({"msg": "hello I"}), not ours
"""
import json
import sys
import time

import redis


def main():
    mode, port, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    r = redis.Redis(host="127.0.0.1", port=port)
    if mode == "read":
        want = int(sys.argv[4])
        try:
            r.xgroup_create(stream, stream, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        got = []
        deadline = time.time() + 30
        while len(got) < want and time.time() < deadline:
            reply = r.xreadgroup(stream, "python", {stream: ">"}, count=32, block=200)
            for _, entries in reply:
                for entry_id, fields in entries:
                    pending = r.xpending_range(stream, stream, entry_id, entry_id, 1)
                    count = pending[0]["times_delivered"]
                    got.append([count, {k.decode(): v.decode() for k, v in fields.items()}])
                    r.xack(stream, stream, entry_id)
        print(json.dumps(got))
    elif mode == "send":
        run, n = sys.argv[4], int(sys.argv[5])
        now = int(time.time() * 1e6)
        for seq in range(n):
            r.xadd(stream, {"body": f"mw1 {int(run, 16):016x} 9 {seq} {now} {now} -"})
    elif mode == "plain":
        for i in range(int(sys.argv[4])):
            r.xadd(stream, {"msg": f"hello {i}"})
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
