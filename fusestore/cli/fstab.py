"""`mount.fusestore`: the helper mount(8) runs for `mount -t fusestore` and fstab lines.

mount(8) calls `mount.fusestore SOURCE DIR [-sfnv] [-o OPTIONS]`; this turns that into
`fusestore mount --background SOURCE DIR -o OPTIONS`, which returns once the mount is
ready (or exits 2 with the reason), as mount(8) expects. mount(8)'s own options in
OPTIONS (`_netdev`, `noauto`, `nofail`, `x-systemd.*`, ...) are dropped there.
"""

from __future__ import annotations

import sys


def translate(argv: list[str]) -> list[str]:
    """The `fusestore` arguments for mount(8)'s helper arguments."""
    positional: list[str] = []
    options: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "-o":
            options.append(next(args, ""))
        elif arg.startswith("-o"):
            options.append(arg[2:])
        elif arg == "-t":
            next(args, None)  # the type: always fusestore here
        elif arg.startswith("-") and len(arg) > 1:
            continue  # -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do
        else:
            positional.append(arg)
    if len(positional) != 2:
        print("usage: mount.fusestore STORE-URL MOUNTPOINT [-o OPTIONS]", file=sys.stderr)
        sys.exit(2)
    command = ["mount", "--background", *positional]
    for text in options:
        command += ["-o", text]
    return command


def main(argv: list[str] | None = None) -> None:
    from .app import main as cli
    from .process import run_on_c_allocator

    if argv is None:
        run_on_c_allocator()

    cli(translate(sys.argv[1:] if argv is None else argv), prog_name="fusestore")


if __name__ == "__main__":  # `python -m fusestore.cli.fstab`: what /sbin/mount.fusestore runs
    main()
