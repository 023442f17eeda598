"""The cache inspector: the caches on this machine, what each one holds, what it still has
to upload, cleaning it, and recovering what may not be in the store.

The logic behind `fusestore cache list|show|clean|recover` and `umount`'s account:
`find_caches` and `describe` report (`survey`), `pending_items` details the journal
(`journalread`), `clean` frees space (`clean`), `lost_entries` and `recover` handle
lost+found (`lostfound`); `cachedir` opens and walks a cache directory, `errors` holds
what they raise. Nothing here talks to a store or a daemon: every function blocks on
local disk only (plus at most a few seconds of SQLite's busy wait while a running daemon
holds its journal's write lock).

What a cache directory holds (see `fusestore.cache.layout`): `store.json` (the store's
URL; a directory without it is not a cache and is refused), `lock` (flock'ed by the
daemon using the cache), `data/` (one file per content id), `index/` (diskcache: clean
contents, remembered metadata), `journal/` (diskcache: work not yet in the store),
`journal.id` (which journal that is) and `lost+found/` (data set aside by a mount: files
that may hold changes but that no journal record could account for; `recover` copies
them out). A data file named by a journal record holds changes not yet in the store;
every other data file is clean (a copy of an object) and may be removed at any time, as
long as the journal can be read.

Safety rules every function keeps:

- A cache is *in use* while another process holds the flock on its `lock`. It is tested
  with a non-blocking shared flock on a separate descriptor, released at once; the lock
  file is never created. (For that instant a daemon starting on the same cache would be
  told the cache is in use; it is never broken.)
- The journal is only ever read, never written, and no file of the cache changes: it is
  read through a read-only SQLite connection next to a running daemon's (concurrent WAL
  reads are safe; what is shown is a snapshot, maybe stale by the time it is printed),
  as an immutable file when it has no write-ahead log, or, when a daemon that was killed
  left a log behind, from a private copy of the database and its log. So the pending
  fields are known for caches in use too; they are None (unknown) only when the journal
  cannot be read at all. Records are unpickled as plain data only (dicts, lists,
  strings, numbers): no journal can make this process run code.
- Symlinks inside the cache directory are never followed (the cache path itself may be
  one); only the cache's own entries (`data`, `index`, `journal`, `lock`, `store.json`)
  are ever removed, so a cache directory shared with other files loses none of them.

Nothing in the daemon imports this package; the modules import downward only
(`errors` ← `cachedir` ← `journalread` ← `survey` ← `clean`, and `lostfound`), and from
the rest of `fusestore.cache` only `dbread`, `journal`, `layout` and `recovery`.
"""

from ..recovery import LostEntry
from .cachedir import CACHE_ENTRIES
from .clean import REMOVAL_ORDER, CleanResult, Kept, clean
from .errors import CacheError, CacheInUse, NotACache
from .journalread import JOURNAL_DB, JOURNAL_TIMEOUT, PendingItem, pending_items
from .lostfound import lost_entries, recover
from .survey import CacheInfo, describe, find_caches

__all__ = [
    "CACHE_ENTRIES",
    "JOURNAL_DB",
    "JOURNAL_TIMEOUT",
    "REMOVAL_ORDER",
    "CacheError",
    "CacheInUse",
    "CacheInfo",
    "CleanResult",
    "Kept",
    "LostEntry",
    "NotACache",
    "PendingItem",
    "clean",
    "describe",
    "find_caches",
    "lost_entries",
    "pending_items",
    "recover",
]
