"""The FUSE-free filesystem: inodes, the key⇄path namespace, open files and POSIX rules."""

from typing import TYPE_CHECKING, Any

from .nodes import Kind, Node
from .settings import MountSettings

if TYPE_CHECKING:
    from .filesystem import Filesystem

__all__ = ["Filesystem", "Kind", "MountSettings", "Node"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: writeback imports the Node record from this package, and
    # must not load the file system (which builds writeback) on the way.
    if name == "Filesystem":
        from . import filesystem

        return getattr(filesystem, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
