"""`make run`: a local S3 server with a demo bucket, mounted at ./mnt until Ctrl-C.

The server keeps its objects in memory and starts empty each time, so the demo's cache
(./.cache) starts empty too. Ctrl-C uploads every change, unmounts, then stops the server.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..core import MountSettings
from ..stores import open_store
from ..testing.s3server import CREDENTIALS, LocalS3Server, isolated_environment
from .daemon import Daemon, SetupError


def main(bucket: str = "demo", mountpoint: str = "mnt", cache_dir: str = ".cache") -> int:
    os.environ.update(isolated_environment())  # the demo server's keys, not the user's
    Path(mountpoint).mkdir(exist_ok=True)
    shutil.rmtree(cache_dir, ignore_errors=True)
    with LocalS3Server() as server:
        server.create_bucket(bucket)
        store = open_store(f"s3://{bucket}", endpoint_url=server.endpoint_url)
        store.put("hello.txt", b"Hello from fusestore.\n", {"mode": "33188"})
        print(
            f"Local S3 server: {server.endpoint_url}  bucket: {bucket}  "
            f"(access key {CREDENTIALS['aws_access_key_id']}, any secret)\n"
            f"Mounting it at ./{mountpoint}; try, in another terminal:\n"
            f"  ls -l {mountpoint}; cp -r /etc/default {mountpoint}/\n"
            f"  AWS_ACCESS_KEY_ID={CREDENTIALS['aws_access_key_id']} AWS_SECRET_ACCESS_KEY=any "
            f"aws --endpoint-url {server.endpoint_url} s3 ls s3://{bucket} --recursive\n"
            "Ctrl-C uploads every change, unmounts and stops the server.",
            flush=True,
        )
        try:
            code = Daemon(store, mountpoint, MountSettings(writeback_delay=1.0), cache_dir).run()
        except SetupError as exc:
            print(f"fusestore: error: {exc}", file=sys.stderr)
            return 2
        print(f"{mountpoint} unmounted (exit {code}); stopping the local S3 server", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
