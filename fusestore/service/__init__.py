"""The service layer: a mount's daemon and what runs it.

`launch` starts a daemon from checked mount options (in the foreground, or forked into
the background once it is ready); `daemon` runs its lifecycle (probe the store, open
and lock the cache, replay the journal, mount, serve, sync everything, unmount);
`fuse_ops` turns kernel requests into calls of the core's `Filesystem`; `control` and
`control_commands` are the control channel and its commands (status, flush, link,
pin, unmount …); `sdnotify` speaks systemd's notify protocol; `mounts` checks
mountpoints and keeps the table `fusestore umount` finds daemons by; `logs` sets up
logging; `demo` is `make run`.

It calls the core (and through it writeback, the cache and the stores); nothing below
it imports this package. Only the front uses it: the command line, and the Python API as
a client (the mount table and the control channel).
"""
