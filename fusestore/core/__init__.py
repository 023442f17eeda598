"""The FUSE-free filesystem: inodes, the key⇄path namespace, open files and POSIX rules."""

from .filesystem import Filesystem, MountSettings
from .nodes import Kind, Node

__all__ = ["Filesystem", "Kind", "MountSettings", "Node"]
