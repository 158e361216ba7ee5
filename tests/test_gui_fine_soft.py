"""The app shows what the fine stage could not do: a broken LLM in a banner, an unchecked photo in its tooltip."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSize, Qt  # noqa: E402
from PySide6.QtWidgets import QListView  # noqa: E402

from retllm_desktop.gui.results_model import ResultsModel, ThumbDelegate  # noqa: E402
from retllm_desktop.gui.thumbnails import ThumbnailLoader  # noqa: E402
from retllm_desktop.library import Library  # noqa: E402
from retllm_desktop.rerank import RerankOptions  # noqa: E402
from retllm_desktop.search import Query  # noqa: E402

from .test_fine_stage_soft import _models_copy  # noqa: E402
from .test_gui import WAIT, close_window, make_window  # noqa: E402


def test_an_unchecked_photo_says_why_in_the_grid(qtbot, tmp_path: Path, full_models_dir, photo_tree) -> None:
    with Library(tmp_path / "lib", models_dir=full_models_dir, threads=1) as lib:
        lib.index_roots([str(photo_tree)])
        coarse = lib.search_coarse(Query(text="boats"), top=3)
        Path(coarse.results[0].path).write_bytes(b"garbage")
        last = list(lib.search(Query(text="boats"), top=3, rerank=RerankOptions(k=3, ve="off")))[-1]
    thumbs = ThumbnailLoader(tmp_path / "thumbs", threads=1)
    model = ResultsModel(thumbs)
    view = QListView()
    qtbot.addWidget(view)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setItemDelegate(ThumbDelegate(view))
    view.setGridSize(QSize(180, 210))
    view.setModel(model)
    view.show()
    model.set_results(last.visible)
    tips = [model.data(model.index(i, 0), Qt.ItemDataRole.ToolTipRole) for i in range(3)]
    assert "could not check: " in tips[2] and "(checked)" in tips[0] and "(checked)" in tips[1]
    qtbot.wait(50)  # the delegate paints the "could not check" badge without error
    view.close()
    thumbs.shutdown()


def test_a_broken_llm_shows_a_banner(qtbot, tmp_path: Path, full_models_dir) -> None:
    from retllm_desktop.gui.settings import Settings

    mllm = _models_copy(full_models_dir, tmp_path / "models")
    (mllm / "mmproj.gguf").write_bytes((mllm / "mmproj.gguf").read_bytes()[:-10])
    settings = Settings.load(tmp_path / "gui.json")
    settings.rerank, settings.setup_done = True, True
    w = make_window(qtbot, settings, tmp_path, tmp_path / "models")
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=WAIT)
    assert "broken" in w.banner.text() and "truncated" in w.banner.text()
    assert not w._mllm_ok
    close_window(w)


def test_a_damaged_catalog_names_repair_in_the_app(
    qtbot, tmp_path: Path, clip_models_dir, photo_tree
) -> None:
    from retllm_desktop.gui.main_window import MainWindow
    from retllm_desktop.gui.settings import Settings

    from .test_repair import _damage

    with Library(tmp_path / "library", models_dir=clip_models_dir, threads=1) as lib:
        lib.index_roots([str(photo_tree)])
    _damage(tmp_path / "library" / "catalog.db", None)
    settings = Settings.load(tmp_path / "gui.json")
    settings.setup_done = True
    w = MainWindow(settings, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=WAIT)
    assert "retllm-desktop repair" in w.banner.text() and "damaged" in w.banner.text()
    w.close()
