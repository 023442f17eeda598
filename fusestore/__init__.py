"""fusestore: mount an object store (S3 and friends) as an ordinary directory.

From Python: `fusestore.mount(url, mountpoint, sync_mode=SyncMode.SYNC_ALL, **options)`
(see `fusestore.api`).
"""

from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:
    from .api import Mount, MountError, SyncMode, mount

__all__ = ["Mount", "MountError", "SyncMode", "__version__", "mount"]


def __getattr__(name: str) -> object:
    # The API (trio and all) is imported when first used, not with every submodule: the
    # file store's listing helper process imports the few modules it runs.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'fusestore' has no attribute {name!r}")
