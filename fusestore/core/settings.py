"""`MountSettings`: the tunables of one mount, as the command line gives them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..stores.base import MiB
from ..writeback.conflicts import DEFAULT_TEMPLATE


@dataclass
class MountSettings:
    """The tunables of one mount (command-line options)."""

    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    #: mode of files / directories whose object carries none (None: 0666 / 0777 less
    #: the umask); a mode given wins over the umask for its kind
    file_mode: int | None = None
    dir_mode: int | None = None
    metadata_ttl: float = 60.0
    #: how conflict copies are named (see `conflicts.ConflictNames`)
    conflict_name: str = DEFAULT_TEMPLATE
    writeback_delay: float = 2.0
    cache_size: int = 10 * 1024 * MiB
    dirty_limit: int = 2 * 1024 * MiB
    upload_workers: int = 4
    store_connections: int = 16
    read_ahead_max: int = 64 * MiB
    #: seconds a kernel request waits for the store before it fails with EIO
    io_timeout: float = 30.0
    #: "local": fsync returns once the change is durable in the cache; "remote": once the
    #: store holds it
    fsync: str = "local"
    #: a new file at least this big is due at its last close (0: never)
    upload_at_close: int = 16 * MiB
    #: HEAD an object on its first lookup when the listing did not say its attributes
    #: (else they stay the listing's until the file is changed)
    exact_attrs: bool = False
    #: keep extended attributes (user.*); without, the FUSE layer answers ENOSYS
    xattr: bool = False
    #: past this many entries in memory, the kernel is asked to forget those of the
    #: directories read least recently (`Compaction.shed`)
    max_entries: int = 250_000
    #: seconds the kernel and the mount take a name's absence as known, at most the
    #: directory listing's time left (None: the whole `metadata_ttl`, like any name)
    negative_ttl: float | None = None
