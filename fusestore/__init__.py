"""fusestore: mount an object store (S3 and friends) as an ordinary directory."""

__version__ = "0.1.0"
