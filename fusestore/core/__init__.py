"""The FUSE-free filesystem: inodes, the key⇄path namespace, open files and POSIX rules.

The package exports only its records (`Node`, `Kind`, `MountSettings`): writeback, below
the core, imports the node record, so importing this package must not load the file
system (`fusestore.core.filesystem.Filesystem`), which builds writeback.
"""

from .nodes import Kind, Node
from .settings import MountSettings

__all__ = ["Kind", "MountSettings", "Node"]
