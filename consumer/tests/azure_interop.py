"""Python's azure-storage-queue (v12) on the same Azurite queue as our binaries, for azure_interop.rs.

    azure_interop.py read  CONN QUEUE ENCODING N        prints one JSON list of the N bodies it received
    azure_interop.py send  CONN QUEUE ENCODING RUN N     sends N format-1 envelopes of run RUN (hex)

ENCODING is raw (the v12 SDK's default: no encode policy) or base64 (BinaryBase64 policies, as Azure
Functions expect). The API version is pinned to one Azurite 3.35.0 accepts.
"""
import json
import sys
import time

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    BinaryBase64EncodePolicy,
    QueueClient,
)

API_VERSION = "2021-12-02"


def client(conn, queue, encoding):
    kwargs = {"api_version": API_VERSION}
    if encoding == "base64":
        kwargs["message_encode_policy"] = BinaryBase64EncodePolicy()
        kwargs["message_decode_policy"] = BinaryBase64DecodePolicy()
    return QueueClient.from_connection_string(conn, queue, **kwargs)


def text(content):
    return content.decode() if isinstance(content, (bytes, bytearray)) else content


def main():
    mode, conn, queue, encoding = sys.argv[1:5]
    q = client(conn, queue, encoding)
    if mode == "read":
        want = int(sys.argv[5])
        bodies = []
        deadline = time.time() + 30
        while len(bodies) < want and time.time() < deadline:
            for m in q.receive_messages(messages_per_page=32, visibility_timeout=30):
                bodies.append(text(m.content))
                q.delete_message(m)
        print(json.dumps(bodies))
    elif mode == "send":
        run, n = sys.argv[5], int(sys.argv[6])
        try:
            q.create_queue()
        except ResourceExistsError:
            pass
        now = int(time.time() * 1e6)
        for seq in range(n):
            body = f"mw1 {int(run, 16):016x} 9 {seq} {now} {now} -"
            q.send_message(body.encode() if encoding == "base64" else body)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
