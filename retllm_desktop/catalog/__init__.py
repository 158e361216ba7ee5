"""The catalog: one SQLite file per library, the source of truth, and the only package that speaks SQL.

Photos, roots, per-file failures and per-model embeddings live here; the hnswlib index is derived
from the ``embeddings`` table and can always be rebuilt from it. Every multi-row change runs in one
transaction so a crash leaves either the old or the new state, never half of it. The connection is
private: other modules ask ``Catalog`` methods, so every write goes through its lock. sqlite-utils
does only schema work that never commits on its own (introspection, ``create_index``); CASCADE tables,
FTS5 tables with triggers and every query stay plain ``sqlite3``: sqlite-utils can't express cascades, and
its write helpers commit by themselves (``with conn:`` / ``executescript``), which the connection refuses.

The rooms: ``schema`` (migrations), ``connection`` (the guarded connection, transactions, errors),
``backup`` (online copies, file checks, salvage), ``records`` (the row dataclasses), and the queries by
subject — ``store`` (roots, photos, failures), ``vectors``, ``places``, ``text``, ``faces`` — joined in ``Catalog``.
"""

from .connection import CatalogError, is_damage
from .records import Photo, Root
from .store import Catalog

__all__ = ["Catalog", "CatalogError", "Photo", "Root", "is_damage"]
