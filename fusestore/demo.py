"""`make run`: a local S3 server with a demo bucket, in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading

from .stores import open_store
from .testing.s3server import CREDENTIALS, LocalS3Server, isolated_aws_environment


def main(bucket: str = "demo") -> int:
    os.environ.update(isolated_aws_environment())  # the demo server's keys, not the user's
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalS3Server() as server:
        server.create_bucket(bucket)
        store = open_store(f"s3://{bucket}", endpoint_url=server.endpoint_url)
        store.put("hello.txt", b"Hello from fusestore.\n", {"mode": "33188"})
        store.probe()
        print(
            f"Local S3 server: {server.endpoint_url}  bucket: {bucket}  "
            f"(access key {CREDENTIALS['aws_access_key_id']}, any secret)\n"
            f"Try, in another terminal:\n"
            f"  AWS_ACCESS_KEY_ID={CREDENTIALS['aws_access_key_id']} AWS_SECRET_ACCESS_KEY=any "
            f".venv/bin/fusestore check s3://{bucket} --endpoint-url {server.endpoint_url}\n"
            "Ctrl-C stops the server.",
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("\nstopping the local S3 server", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
