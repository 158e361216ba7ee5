"""What the app does with several selected photos: copy their paths, copy the files to a folder, show them.

Your photos are only ever read: nothing here moves, renames or deletes one. "Delete" says so and offers
to show the photos in the file manager, where deleting is the user's own act (the library notices and
drops deleted photos by itself). Copying never overwrites: a name already in the folder gets " (2)".
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QApplication, QMenu, QMessageBox, QWidget

from .preview import show_in_folder

MAX_FOLDERS_SHOWN = 5  # "Show in folder" opens at most this many file-manager windows


def unique_target(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name (2).ext``, ``name (3).ext``, … when that exists already."""
    target = folder / name
    stem, ext = os.path.splitext(name)
    n = 2
    while target.exists():
        target = folder / f"{stem} ({n}){ext}"
        n += 1
    return target


@dataclass
class CopyReport:
    copied: list[str] = field(default_factory=list)  # the new files
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    cancelled: bool = False

    def summary(self, folder: str) -> str:
        n = len(self.copied)
        text = f"Copied {n:,} photo{'s' if n != 1 else ''} to {folder}"
        if self.failed:
            text += f"; {len(self.failed):,} could not be copied ({self.failed[0][1]})"
        if self.cancelled:
            text += " (cancelled)"
        return text


def copy_files(
    paths: Iterable[str],
    folder: str | os.PathLike[str],
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CopyReport:
    """Copy each photo (bytes and dates) into ``folder``; never overwrites, never touches the originals."""
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    todo = list(dict.fromkeys(paths))
    report = CopyReport()
    for i, src in enumerate(todo):
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            break
        try:
            if Path(src).resolve().parent == dest.resolve():
                raise OSError("it is already in that folder")
            target = unique_target(dest, os.path.basename(src))
            shutil.copy2(src, target)
            report.copied.append(str(target))
        except OSError as e:
            report.failed.append((src, e.strerror or str(e)))
        if progress is not None:
            progress(i + 1, len(todo))
    return report


def copy_paths(paths: list[str]) -> None:
    """The paths on the clipboard, one per line (what a file manager or terminal pastes)."""
    QApplication.clipboard().setText("\n".join(paths))


def show_folders(paths: list[str]) -> int:
    """Show each distinct folder once (the first selected photo in it highlighted); returns how many."""
    firsts: dict[str, str] = {}
    for p in paths:
        firsts.setdefault(os.path.dirname(p), p)
    shown = list(firsts.values())[:MAX_FOLDERS_SHOWN]
    for p in shown:
        show_in_folder(p)
    return len(shown)


def explain_delete(parent: QWidget, paths: list[str]) -> bool:
    """Say what Delete does here (nothing to your files); True when the user asked to see them instead."""
    n = len(paths)
    what = "this photo" if n == 1 else f"these {n:,} photos"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Information)
    box.setWindowTitle("Delete photos")
    box.setText(f"RetLLM Desktop never deletes or changes your photos, so {what} stay where they are.")
    box.setInformativeText(
        "To delete them, show them in their folder and delete them there: the library notices and "
        "drops them by itself. To stop searching a whole folder, remove it in the Library panel."
    )
    show = box.addButton("Show in folder", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Close)
    box.setObjectName("deleteExplained")
    box.exec()
    if box.clickedButton() is show:
        show_folders(paths)
        return True
    return False


def add_selection_actions(
    menu: QMenu, parent: QWidget, paths: list[str], copy_to: Callable[[list[str]], None]
) -> None:
    """The actions every grid offers for its selection: count, copy paths, copy files, show, delete."""
    n = len(paths)
    if n > 1:
        title = menu.addAction(f"{n:,} selected")
        title.setEnabled(False)
        menu.addSeparator()
    menu.addAction("Copy path" if n == 1 else f"Copy {n:,} paths", lambda: copy_paths(paths))
    menu.addAction("Copy to folder…", lambda: copy_to(paths))
    menu.addAction("Show in folder", lambda: show_folders(paths))
    menu.addSeparator()
    menu.addAction("Delete…", lambda: explain_delete(parent, paths))


class DeleteKey(QObject):
    """Delete or Backspace on a grid explains what deleting means here instead of silently doing nothing."""

    def __init__(self, view: QWidget, selected: Callable[[], list[str]]) -> None:
        super().__init__(view)
        self.view, self.selected = view, selected
        view.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            paths = self.selected()
            if paths:
                explain_delete(self.view, paths)
                return True
        return False
