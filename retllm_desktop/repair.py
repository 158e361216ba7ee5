"""Catalog backups and ``retllm-desktop repair``: a damaged catalog is a restore away, never a dead end.

After an ``index`` run that changed the catalog, a copy is made with SQLite's online backup API and
checked (``PRAGMA quick_check``) before it joins the two rolling generations in ``<library>/backups/``
(``catalog.1.db`` newest, ``catalog.2.db`` the one before). A damaged catalog ("database disk image is
malformed") makes every command say ``retllm-desktop repair``, which

1. moves the damaged file (and its WAL) aside to ``<library>/damaged/`` (never deletes it),
2. restores the newest backup that passes its check — or, with none, starts an empty catalog with the
   folders the damaged one still shows (or those given with ``--folder``),
3. drops the derived vector index and runs ``index``: what changed on disk since the backup is picked
   up, and only photos without a stored vector are embedded again.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .catalog.backup import check_file, salvage_roots
from .errors import RetllmError
from .locking import WriterLock

log = logging.getLogger(__name__)

GENERATIONS = 2
WATCH_BACKUP_INTERVAL_S = 3600.0  # the watcher's small runs refresh the backup at most this often


def backup_paths(library_dir: Path) -> list[Path]:
    """Newest first."""
    return [Path(library_dir) / "backups" / f"catalog.{i}.db" for i in range(1, GENERATIONS + 1)]


def make_backup(catalog: Catalog, library_dir: Path) -> Path:
    """Add a checked copy of ``catalog`` as the newest generation (the oldest one drops out)."""
    paths = backup_paths(library_dir)
    fresh = paths[0].with_name("catalog.new.db")
    catalog.backup_to(fresh)
    for older, newer in zip(reversed(paths), reversed(paths[:-1]), strict=False):
        if newer.exists():
            os.replace(newer, older)
    os.replace(fresh, paths[0])
    return paths[0]


def backup_due(library_dir: Path, small_run: bool) -> bool:
    if not small_run:
        return True
    newest = backup_paths(library_dir)[0]
    try:
        return time.time() - newest.stat().st_mtime > WATCH_BACKUP_INTERVAL_S
    except OSError:
        return True


@dataclass
class RepairReport:
    catalog: str
    damage: str | None  # what the check found (None: the catalog was healthy and left alone)
    moved_to: str | None = None  # where the damaged file went
    restored_from: str | None = None  # the backup used, or None when rebuilt from the photos
    folders: list[str] = field(default_factory=list)
    index: dict[str, Any] | None = None  # the reconciling index run's summary

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _move_aside(db: Path) -> Path:
    dest_dir = db.parent / "damaged"
    dest_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = dest_dir / f"catalog-{stamp}.db"
    n = 1
    while dest.exists():
        n += 1
        dest = dest_dir / f"catalog-{stamp}-{n}.db"
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(db) + suffix)
        if src.exists():
            os.replace(src, Path(str(dest) + suffix))
    return dest


def _restore(library_dir: Path, db: Path) -> Path | None:
    """Copy the newest backup that passes its check to ``db``; None when there is none."""
    for b in backup_paths(library_dir):
        why = check_file(b)
        if why is None:
            tmp = db.with_name(db.name + ".restore")
            shutil.copyfile(b, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, db)
            return b
        if b.exists():
            log.warning("backup %s is not usable: %s", b, why)
    return None


def repair_library(
    library_dir: Path,
    folders: list[str] | None = None,
    force: bool = False,
    open_library: Any = None,
    progress: Any = None,
    cancel: Any = None,
) -> RepairReport:
    """Check the catalog; when damaged (or ``force``), restore or rebuild it and reconcile with the disk.

    ``open_library(path)`` returns a :class:`~retllm_desktop.library.Library` (the caller's models and
    threads); it runs the reconciling index.
    """
    library_dir = Path(library_dir)
    db = library_dir / "catalog.db"
    lock = WriterLock(library_dir / "write.lock")
    lock.acquire(blocking=False)  # another process writing: LibraryLockedError, nothing touched
    restored: Path | None = None
    salvaged: list[str] = []
    try:
        damage = check_file(db, readonly=False) if db.exists() else "missing"
        report = RepairReport(catalog=str(db), damage=damage)
        if damage is None and not force:
            if not folders:
                return report
        else:
            salvaged = salvage_roots(db) if db.exists() else []
            if db.exists():
                report.moved_to = str(_move_aside(db))
            restored = _restore(library_dir, db)
            report.restored_from = str(restored) if restored else None
            for f in (library_dir / "index").glob("*"):  # derived from the catalog: rebuilt below
                f.unlink()
    finally:
        lock.release()
    with open_library(library_dir) as lib:
        for path in [*(folders or []), *([] if restored else salvaged)]:
            if os.path.isdir(path):
                lib.add_root(path)
        report.folders = [r.path for r in lib.roots()]
        if not report.folders:
            raise RetllmError(
                "the catalog was moved aside but no backup was usable and no folder is known: run "
                "`retllm-desktop repair --folder DIR` (or `index DIR`) to rebuild it from your photos"
            )
        report.index = lib.index_roots(progress=progress, cancel=cancel).as_dict()
    return report
