"""Errors of the model catalog. ``engine`` translates them into its own tree at the boundary."""

from __future__ import annotations


class CatalogError(ValueError):
    """The catalog data or a user's override is invalid; the message names the entry, the key and the source."""


class UnknownModelError(CatalogError, KeyError):
    """A model id (or alias) that is not in the catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
