"""The app's People list, person chips and face outlines (pytest-qt, Qt offscreen) on real face photos."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QLineEdit, QToolButton  # noqa: E402

from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

from .helpers_faces import by_identity, copy_photos, needs_faces  # noqa: E402

pytestmark = needs_faces
WAIT = 120_000


def _names(w: MainWindow) -> set[str]:
    return {Path(w.model.result(i).photo.path).name for i in range(w.model.rowCount())}


def _chips(w: MainWindow) -> list[QToolButton]:
    return [b for b in w.bar.understood.findChildren(QToolButton) if b.isVisible()]


def _labels(w: MainWindow) -> list[str]:
    lst = w.people.panel.list
    return [lst.item(i).text() for i in range(lst.count())]


def test_people_panel_filter_rename_merge_chips_and_outlines(qtbot, tmp_path, clip_models_dir):
    groups = by_identity()
    # img3/img12 are 0.613 apart, over the 0.6 threshold (see README): take another pair of photos
    big, three = groups[0][:4], groups[1]
    two = next(g for g in groups[2:] if "img3.jpg" not in g)
    photos = tmp_path / "photos"
    copy_photos(big + three + two, photos)
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done = False, True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(photos)])
    qtbot.waitUntil(lambda: w.people.panel.list.count() == 3, timeout=WAIT)
    labels = _labels(w)
    assert labels[0].startswith("Add a name") and "4 photos" in labels[0]  # the largest unnamed first
    # the face thumbnails arrive from a worker
    qtbot.waitUntil(lambda: not w.people.panel.list.item(0).icon().isNull(), timeout=WAIT)

    # rename in place: the editor shows the name only; the engine stores it, the list re-sorts
    lst = w.people.panel.list
    first = lst.item(0)
    pid = first.data(Qt.ItemDataRole.UserRole)
    lst.editItem(first)
    editor = lst.findChild(QLineEdit)
    assert editor is not None and editor.text() == ""
    editor.setText("Zoë Durand")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.library.person(pid)["name"] == "Zoë Durand", timeout=WAIT)
    qtbot.waitUntil(lambda: _labels(w)[0].startswith("Zoë Durand\n4 photos"), timeout=WAIT)

    # a click filters to their photos, shown as a chip; removing the chip shows everything again
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.people.panel.choose(pid)
    assert _names(w) == set(big)
    chip = next(b for b in _chips(w) if "Zoë Durand" in b.text())
    # the name typed in the search field is understood as the same person
    w.search_edit.setText("zoe")
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)
    assert _names(w) == set(big)
    assert any("Zoë Durand" in b.text() for b in _chips(w))
    w.search_edit.clear()
    chip = next(b for b in _chips(w) if b.text().startswith("With"))
    qtbot.mouseClick(chip, Qt.MouseButton.LeftButton)  # nothing else asked: the search is cleared
    qtbot.waitUntil(lambda: w.people.person_filter is None, timeout=WAIT)

    # merge by the menu: "Same person as" → the named person takes the other's photos
    other = next(
        lst.item(i).data(Qt.ItemDataRole.UserRole)
        for i in range(lst.count())
        if "3 photos" in lst.item(i).text()
    )
    menu = w.people.panel.context_menu(other)
    same = next(a for a in menu.actions() if a.menu() is not None)
    target = next(a for a in same.menu().actions() if "Zoë Durand" in a.text())
    target.trigger()
    qtbot.waitUntil(lambda: lst.count() == 2 and "7 photos" in _labels(w)[0], timeout=WAIT)
    assert w.library.catalog.person(other) is None

    # merge by drag: emitted by the list's drop on another person
    rest = next(
        lst.item(i).data(Qt.ItemDataRole.UserRole)
        for i in range(lst.count())
        if lst.item(i).data(Qt.ItemDataRole.UserRole) != pid
    )
    lst.dropped_on.emit(pid, rest)
    qtbot.waitUntil(lambda: lst.count() == 1 and "9 photos" in _labels(w)[0], timeout=WAIT)

    # the preview outlines the faces with their names
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.people.panel.choose(pid)
    w.view.setCurrentIndex(w.model.index(0, 0))
    w.open_preview()
    prev = w._preview
    qtbot.waitUntil(lambda: prev.image.has_image(), timeout=WAIT)
    faces = prev.image.faces()
    assert faces and all(name == "Zoë Durand" for _, name in faces)
    assert all(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 for (x0, y0, x1, y1), _ in faces)
    prev.close()


def test_face_finding_setting_reaches_the_library(qtbot, tmp_path):
    """Settings ▸ Advanced ▸ Face finding: kept in the settings file, reopens the library with that detector."""
    from retllm_desktop.gui.library_controller import open_engine
    from retllm_desktop.gui.settings_dialog import SettingsDialog

    s = Settings(path=Path(tmp_path) / "gui.json")
    d = SettingsDialog(s, str(tmp_path), str(tmp_path))
    qtbot.addWidget(d)
    assert d.face_finder.currentData() == "hog"
    d.face_finder.setCurrentIndex(d.face_finder.findData("cnn"))
    assert d.apply() is True  # another face model: the library is reopened with it
    back = Settings.load(Path(tmp_path) / "gui.json")
    assert back.face_detector == "cnn"
    with open_engine(str(tmp_path / "lib"), str(tmp_path), back) as lib:
        assert lib.face_detector == "cnn" and lib.faces_model.key.endswith("/cnn")
    (tmp_path / "bad.json").write_text('{"face_detector": "laser"}')
    assert Settings.load(tmp_path / "bad.json").face_detector == "hog"
