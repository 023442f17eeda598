"""fusestore: mount an object store (S3 and friends) as an ordinary directory.

From Python: `fusestore.mount(url, mountpoint, sync_mode=SyncMode.SYNC_ALL, **options)`
(see `fusestore.api`).
"""

__version__ = "0.1.0"

from .api import Mount, MountError, SyncMode, mount

__all__ = ["Mount", "MountError", "SyncMode", "__version__", "mount"]
