"""fusestore's version: a module of its own, so that any layer can name it (importing the
package itself would import its API, and with it the whole daemon)."""

__version__ = "0.1.0"
