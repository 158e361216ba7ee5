"""Results true to the disk: a search never shows a photo that is no longer there.

The catalog can lag behind the disk (photos deleted while nothing watched, or between two watcher
batches). Before a result page is shown its files are stat'ed (a page is tens of files, a stat is
microseconds on a local disk); a photo whose file is gone while its folder is still there is left out,
the search is run again without it so the page stays full, and its path is recorded in the catalog's
meta table so the next index run (a watcher batch included) removes it for good. A photo on a drive that
is not mounted is not "gone": its folder is missing too, and it stays listed as offline.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

log = logging.getLogger(__name__)

META_KEY = "missing_paths"  # JSON list of photo paths found missing by searches, for the next index
MAX_RECORDED = 10_000
MAX_ROUNDS = 4  # searches per query at most (each round drops what the last one found missing)


def is_gone(path: str, root_path: str | None) -> bool:
    """The file is missing while its library folder is present (so not an offline drive)."""
    try:
        os.stat(path)
        return False
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        pass
    except OSError:  # permission, I/O error: not proof that the photo is gone
        return False
    return root_path is None or os.path.isdir(root_path)


class DiskCheck:
    """Keeps what searches found missing (ids for this process, paths for the next index run)."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        self.gone_ids: set[int] = set()

    def recorded(self) -> set[str]:
        try:
            raw = self.catalog.get_meta(META_KEY)
            return set(json.loads(raw)) if raw else set()
        except (ValueError, TypeError, OSError) as e:
            log.warning("missing photos list unreadable: %s", e)
            return set()
        except Exception as e:  # a damaged catalog is reported by the search itself
            log.warning("missing photos list unreadable: %s", e)
            return set()

    def _record(self, paths: Iterable[str]) -> None:
        """Best effort: a read-only or busy catalog must not fail the search that found them."""
        merged = sorted(self.recorded() | set(paths))[:MAX_RECORDED]
        try:
            self.catalog.set_meta(META_KEY, json.dumps(merged))
        except Exception as e:  # sqlite3.OperationalError (read-only, locked), disk full
            log.warning("missing photos not recorded: %s", e)

    def forget(self, still_known: Callable[[str], bool]) -> None:
        """After an index run: keep only paths the catalog still lists and that are still missing."""
        paths = self.recorded()
        if not paths:
            return
        keep = sorted(p for p in paths if still_known(p) and not os.path.exists(p))
        try:
            self.catalog.set_meta(META_KEY, json.dumps(keep))
        except Exception as e:
            log.warning("missing photos list not updated: %s", e)
        self.gone_ids = {i for i in self.gone_ids if self.catalog.photo(i) is not None}

    def search(self, run: Callable[[set[int]], Any], roots: dict[int, str]) -> tuple[Any, list[str]]:
        """``run(exclude)`` returns a SearchUpdate; rerun without the photos found gone on its page."""
        found: list[str] = []
        update = run(set(self.gone_ids))
        for _ in range(MAX_ROUNDS - 1):
            gone = [r for r in update.results if is_gone(r.photo.path, roots.get(r.photo.root_id))]
            if not gone:
                break
            self.gone_ids.update(r.photo.id for r in gone)
            found += [r.photo.path for r in gone]
            self._record(r.photo.path for r in gone)
            update = run(set(self.gone_ids))
        else:  # still finding more after several rounds (a whole folder deleted): drop them without refill
            gone = [r for r in update.results if is_gone(r.photo.path, roots.get(r.photo.root_id))]
            if gone:
                self.gone_ids.update(r.photo.id for r in gone)
                found += [r.photo.path for r in gone]
                self._record(r.photo.path for r in gone)
                ids = {r.photo.id for r in gone}
                update = replace(update, results=[r for r in update.results if r.photo.id not in ids])
                for n, r in enumerate(update.results, 1):
                    r.rank = n
        for r in update.results:  # copies listed with a result: only those still there
            if r.duplicates:
                r.duplicates = [p for p in r.duplicates if not is_gone(p, os.path.dirname(p))]
        return update, found
