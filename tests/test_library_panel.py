"""The library panel: folders with counts, offline roots, failed files, indexing controls, model names."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from retllm_desktop.gui.library_panel import LibraryPanel, format_eta  # noqa: E402


def test_panel_shows_a_real_librarys_status_and_drives_indexing(qtbot, library, photo_tree: Path, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(photo_tree / "album-a", other)
    (photo_tree / "album-b" / "broken.jpg").write_bytes(b"not a photo")
    library.index_roots([str(photo_tree), str(other)])
    shutil.rmtree(other)  # an unplugged drive
    library.index_roots()
    panel = LibraryPanel()
    qtbot.addWidget(panel)
    panel.show()

    panel.set_status(library.status())
    rows = {
        panel.folders.item(i).data(Qt.ItemDataRole.UserRole): panel.folders.item(i).text()
        for i in range(panel.folders.count())
    }
    assert rows[str(photo_tree)] == "photos  —  12 photos"
    assert rows[str(other)] == "other  —  6 photos  (offline)"
    assert panel.failures.topLevelItemCount() == 1 and panel.failures.isVisibleTo(panel)
    item = panel.failures.topLevelItem(0)
    assert item.text(0) == "broken.jpg" and item.data(0, Qt.ItemDataRole.UserRole).endswith("broken.jpg")
    assert "Couldn't read 1 file<" in panel.failures_title.text()
    assert f"Search model: {library.clip.name}" in panel.models.text() and "Checking model: missing" in (
        panel.models.text()
    )

    # Remove asks for the selected folder; not while indexing.
    panel.folders.setCurrentRow(0)
    first = panel.folders.currentItem().data(Qt.ItemDataRole.UserRole)
    with qtbot.waitSignal(panel.remove_requested) as sig:
        panel.remove_btn.click()
    assert sig.args == [first]
    panel.set_indexing(True)
    assert not panel.remove_btn.isEnabled() and not panel.rescan_btn.isEnabled()
    panel.set_progress("embedding", 5, 20, "1m 05s left")
    assert panel.stage.text() == "Indexing 5 of 20 — 1m 05s left" and panel.bar.maximum() == 20
    panel.set_progress("scanning", 0, 0)
    assert panel.stage.text() == "Scanning…" and panel.bar.maximum() == 0  # busy indicator
    with qtbot.waitSignal(panel.pause_requested):
        panel.pause_btn.click()
    panel.set_indexing(False, paused=True)
    assert panel.pause_btn.text() == "Resume" and not panel.cancel_btn.isVisibleTo(panel)
    with qtbot.waitSignal(panel.resume_requested):
        panel.pause_btn.click()
    panel.set_indexing(False)
    assert panel.remove_btn.isEnabled() and not panel.pause_btn.isVisibleTo(panel)

    # The selection survives a refresh; an empty library says what to do.
    panel.set_status(library.status())
    assert panel.folders.currentItem().data(Qt.ItemDataRole.UserRole) == first
    library.remove_root(str(photo_tree))
    library.remove_root(str(other))
    panel.set_status(library.status())
    assert panel.folders.count() == 1 and "No folders yet" in panel.folders.item(0).text()
    assert not panel.failures.isVisibleTo(panel)


def test_format_eta() -> None:
    assert [format_eta(s) for s in (None, float("nan"), -1, 4.4, 65, 3725)] == [
        "",
        "",
        "",
        "4s left",
        "1m 05s left",
        "1h 02m left",
    ]
