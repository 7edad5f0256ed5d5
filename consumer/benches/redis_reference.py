"""The consumer reference of benches/redis.rs: a minimal consumer with the Redis project's Python client.

    redis_reference.py PORT STREAM GROUP N BATCH

Reads N entries in the group with XREADGROUP COUNT BATCH and acks each batch with one XACK, as a plain Redis
Streams consumer does (no lease checks, no trimming). Prints how many it read.
"""
import sys

import redis


def main():
    port, stream, group, n, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    r = redis.Redis(host="127.0.0.1", port=int(port))
    done = 0
    while done < n:
        reply = r.xreadgroup(group, "reference", {stream: ">"}, count=batch, block=1000)
        if not reply:
            break
        ids = [entry_id for _, entries in reply for entry_id, _ in entries]
        r.xack(stream, group, *ids)
        done += len(ids)
    print(done)


if __name__ == "__main__":
    main()
