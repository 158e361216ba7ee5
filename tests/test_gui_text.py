"""The app and the words in photos: the text pass in the progress line, snippets, highlighted boxes."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from .conftest import make_photo  # noqa: E402
from .test_gui import WAIT, close_window, index_folder, make_window, models_dir, search, settings  # noqa: E402, F401
from .test_text import sign  # noqa: E402


@pytest.fixture
def text_photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    sign(root / "harbour.jpg", "Harbour Cafe", 3, size=(640, 480), at=(60, 200))
    sign(root / "exit.jpg", "EXIT 7", 1)
    for i in range(3):
        make_photo(root / f"plain{i}.jpg", seed=40 + i, size=(320, 240))
    return root


def test_text_pass_progress_snippet_and_highlights(qtbot, tmp_path, settings, models_dir, text_photos):  # noqa: F811
    w = make_window(qtbot, settings, tmp_path, models_dir)
    stages: list[str] = []
    w.libraries.index_progress.connect(lambda stage, done, total: stages.append(stage))
    index_folder(qtbot, w, text_photos)
    assert "reading text" in stages
    assert w.last_index_summary.text["read"] == 5 and w.last_index_summary.text["with_text"] == 2

    search(qtbot, w, "harbour")
    top = w.model.result(0)
    assert top.photo.path.endswith("harbour.jpg") and top.text.snippet == "Harbour Cafe"
    tip = w.model.data(w.model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    assert "text: “Harbour Cafe”" in tip

    w.view.setFocus()
    w.view.setCurrentIndex(w.model.index(0, 0))
    qtbot.keyClick(w.view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: w._preview is not None and w._preview.isVisible(), timeout=5000)
    p = w._preview
    assert "Harbour Cafe" in p.fields["Words"].text()
    [box] = p.image.highlights()  # only the matched word, not "Cafe"
    qtbot.waitUntil(p.image.has_image, timeout=WAIT)
    # The outline is drawn where the word is: its top-left corner, mapped into the painted photo.
    img = p.image.grab().toImage()
    pm = p.image._pm
    dpr = pm.devicePixelRatio() or 1.0
    pw, ph = pm.width() / dpr, pm.height() / dpr
    scale = min(p.image.width() / pw, p.image.height() / ph, 4.0)
    x0, y0 = (p.image.width() - pw * scale) / 2, (p.image.height() - ph * scale) / 2
    bx = x0 + box[0][0] * pw * scale - 3
    by = y0 + (box[0][1] + box[3][1]) / 2 * ph * scale
    f = img.devicePixelRatio() or 1.0
    colours = [QColor(img.pixel(int((bx + dx) * f), int(by * f))) for dx in (-1, 0, 1)]
    assert any(c.red() > 200 and c.green() > 150 and c.blue() < 120 for c in colours), [
        c.name() for c in colours
    ]
    p.close()
    qtbot.waitUntil(lambda: w._preview is None, timeout=5000)

    # The setting turns text matching off for searches (and the pass for the next index).
    w.settings.read_text = False
    w.library.read_text = False
    search(qtbot, w, "harbour")
    assert all(r.text is None for r in w.model.results())
    close_window(w)
