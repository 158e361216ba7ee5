"""A burst in the grid and the preview (pytest-qt): one tile with "+N"; a click shows the similar shots."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("pytestqt")
pytest.importorskip("skimage")

from PySide6.QtCore import QSize, Qt  # noqa: E402
from PySide6.QtWidgets import QListView, QStyleOptionViewItem  # noqa: E402

from retllm_desktop.devtools.bursts import real_photos  # noqa: E402
from retllm_desktop.gui.preview import PreviewDialog  # noqa: E402
from retllm_desktop.gui.results_model import GroupRole, ResultsModel, ThumbDelegate  # noqa: E402
from retllm_desktop.gui.thumbnails import ThumbnailLoader  # noqa: E402
from retllm_desktop.gui.workers import WorkerPool  # noqa: E402
from retllm_desktop.library import Library  # noqa: E402
from retllm_desktop.search import Query  # noqa: E402

from .conftest import make_photo  # noqa: E402
from .test_bursts import save_jpeg  # noqa: E402


@pytest.fixture
def burst_results(tmp_path: Path, library: Library):
    base = dict(real_photos())["astronaut"].resize((240, 240))
    root = tmp_path / "photos"
    t0 = datetime(2024, 3, 3, 10, 0, 0)
    for i in range(4):
        save_jpeg(base.crop((i, i, 236 + i, 236 + i)), root / f"shot{i}.jpg", t0 + timedelta(seconds=i * 0.5))
    for i in range(5):
        make_photo(root / f"other{i}.jpg", seed=400 + i)
    library.index_roots([str(root)])
    query = Query(image=str(root / "shot0.jpg"))
    return library, query, library.search_coarse(Query(text="an astronaut"), top=20).results


def badge_center(view: QListView, delegate: ThumbDelegate, row: int):
    option = QStyleOptionViewItem()
    option.rect = view.visualRect(view.model().index(row, 0))
    option.font = view.font()
    badge = delegate.group_badge(option, view.model().index(row, 0))
    assert badge is not None
    return badge.center().toPoint()


def test_grid_badge_click_expands_and_collapses_a_burst(qtbot, tmp_path, burst_results):
    _lib, _query, results = burst_results
    thumbs = ThumbnailLoader(tmp_path / "thumbs", threads=1)
    model = ResultsModel(thumbs)
    view = QListView()
    qtbot.addWidget(view)
    view.setViewMode(QListView.ViewMode.IconMode)
    delegate = ThumbDelegate(view)
    view.setItemDelegate(delegate)
    view.setGridSize(QSize(180, 215))
    view.setModel(model)
    view.resize(1024, 700)
    view.show()
    model.set_results(results)
    assert model.rowCount() == 6, [
        (r.path, r.photo.taken_at, len(r.similar)) for r in results
    ]  # 5 others + a burst of 4
    row = next(i for i in range(model.rowCount()) if model.result(i).similar)
    leader = model.result(row)
    assert model.data(model.index(row, 0), GroupRole) == (3, False)
    assert "3 similar shots" in model.data(model.index(row, 0), Qt.ItemDataRole.ToolTipRole)

    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=badge_center(view, delegate, row))
    assert model.rowCount() == 9
    assert [model.result(row + k) for k in (1, 2, 3)] == leader.similar
    assert model.data(model.index(row + 1, 0), GroupRole) is None  # a member, drawn with "≈"
    # a rerank step of the same query keeps the group open
    model.set_results([r.judged() for r in results], same_query=True)
    assert model.rowCount() == 9 and model.is_expanded(row)

    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=badge_center(view, delegate, row))
    assert model.rowCount() == 6 and not model.is_expanded(row)
    # a click elsewhere on the tile only selects it
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(model.index(row, 0)).center()
    )
    assert model.rowCount() == 6 and view.currentIndex().row() == row
    view.close()
    thumbs.shutdown()


def test_preview_shows_and_walks_a_burst(qtbot, tmp_path, burst_results):
    lib, query, results = burst_results
    thumbs = ThumbnailLoader(tmp_path / "thumbs", threads=1)
    model = ResultsModel(thumbs)
    model.set_results(results)
    row = next(i for i in range(model.rowCount()) if model.result(i).similar)
    pool = WorkerPool(1)
    p = PreviewDialog(None, model.result, model.rowCount, row, lib, query, pool)
    qtbot.addWidget(p)
    assert "3 similar shots" in p.fields["Similar"].text() and "show them" in p.fields["Similar"].text()
    p.fields["Similar"].linkActivated.emit("toggle")
    assert model.rowCount() == 9 and "hide them" in p.fields["Similar"].text()
    p.step(1)
    assert p.row == row + 1 and p.result is model.result(row).similar[0]
    assert "similar shot of an earlier photo" in p.fields["Similar"].text()
    p.step(-1)
    p.fields["Similar"].linkActivated.emit("toggle")
    assert model.rowCount() == 6
    p.close()
    thumbs.shutdown()
