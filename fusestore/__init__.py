"""fusestore: mount an object store (S3 and friends) as an ordinary directory.

From Python: `fusestore.mount(url, mountpoint, sync_mode=SyncMode.SYNC_ALL, **options)`
(see `fusestore.api`).
"""

from .api import Mount, MountError, SyncMode, mount
from .version import __version__

__all__ = ["Mount", "MountError", "SyncMode", "__version__", "mount"]
