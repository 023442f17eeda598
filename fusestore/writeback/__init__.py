"""Write-back: bringing the store up to date with the cache, in the background.

Which way calls go. The core calls writeback (`Flusher.schedule`, `forget`, `wake`,
`hurry`, `written`, `wait_uploaded`, `sync_all`, `run`); writeback calls the core only
through the `WritebackHost` protocol (`host.py`), which lists every core operation it
uses, and hands back what the store took as a result (`WritebackHost.upload_landed`,
`marker_landed`, `keys_deleted`): the core owns its state, writeback owns the store
traffic. Besides the host, writeback is given narrow pieces: the store and its
`StoreCalls`, the journal, the content store, the index, the namespace. Nothing here
imports the core's file system; `core.nodes` (the Node record) and `core.namespace` are
the only core modules it names.

Threads. Everything runs on the trio thread (the queue, the loop, each job's
bookkeeping, the journal and index writes) except the store calls, which go to worker
threads through `StoreCalls` (one capacity limiter for the mount), and the blocking
helpers they run (reading a cache file to send it). A method whose work leaves the trio
thread says so with a docstring sentence beginning `Worker thread:`.

The modules: `flusher` (the loop: due jobs, backoff, recovery, sync_all, progress),
`queue` (due times, bursts, key claims), `uploads` (one upload: conditions, conflict
copies, landed etags), `staging` (a big file's parts sent ahead), `markers` (a
directory's marker), `deletes` (batched deletes), `moves` (writing over a move's
source), `conditions`, `conflicts`, `landings`, `unfinished`, `parked`, `storecalls`.
"""
