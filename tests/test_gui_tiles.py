"""Grid tiles (pytest-qt): every label fits its tile at every zoom and window width; undated photos show
their file date marked as such, or nothing."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from dataclasses import replace  # noqa: E402
from datetime import datetime  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from PySide6.QtGui import QFontMetrics  # noqa: E402
from PySide6.QtWidgets import QStyleOptionViewItem  # noqa: E402

from retllm_desktop.catalog import Photo  # noqa: E402
from retllm_desktop.gui.results_model import ThumbDelegate, describe_date, tile_date_variants  # noqa: E402
from retllm_desktop.models.llm.fine_score import FineScore  # noqa: E402
from retllm_desktop.search import SearchResult  # noqa: E402

from .test_gui import close_window, index_folder, make_window, models_dir, photos, search, settings  # noqa: E402,F401

MTIME = int(datetime(2021, 8, 9, 15, 0).timestamp() * 1e9)


def photo(i: int, **kw) -> Photo:
    base = dict(id=1000 + i, root_id=1, path=f"/nowhere/{'a-very-long-file-name-' * 3}{i}.jpg", size=1,
                mtime_ns=MTIME, hash=f"{i:032x}", taken_at="2019-05-04T10:11:12")  # fmt: skip
    base.update(kw)
    return Photo(**base)


def awkward_results() -> list[SearchResult]:
    fine_yes = FineScore(0.93, 0.04, 0.2, False, 0.93, 0.93)
    fine_no = FineScore(0.31, 0.6, 0.2, False, 0.31, 0.31)
    rs = [
        SearchResult(photo(0, taken_at=None), 0.9, 1),  # undated: the file date, marked
        SearchResult(photo(1, taken_at=None, mtime_ns=0), 0.8, 2),  # no date at all: nothing
        SearchResult(photo(2, taken_at=None, status="offline"), 0.7, 3),
        SearchResult(photo(3), 0.6, 4, check_error="LLM failed on this photo"),
        SearchResult(photo(4), 0.5, 5, in_library=True),
        SearchResult(photo(5), 0.4, 6, fine=fine_yes),
        SearchResult(photo(6, status="offline"), 0.3, 7, fine=fine_no),
    ]
    rs[3].similar = [SearchResult(photo(7), 0.3, 0)]  # a burst badge next to the verdict badge
    rs[4].similar = [SearchResult(photo(8), 0.3, 0), SearchResult(photo(9), 0.3, 0)]
    return rs


def test_undated_photos_show_the_file_date_marked_or_nothing() -> None:
    assert describe_date(None, MTIME) == "2021-08-09 (file date: no capture date in the photo)"
    assert describe_date(None, None) == "" and describe_date("2019-05-04T10:11:12") == "2019-05-04 10:11"
    assert tile_date_variants(photo(0, taken_at=None))[0] == "2021-08-09 (file date)"
    assert all("2021-08" in v or "21-08" in v for v in tile_date_variants(photo(0, taken_at=None)))
    assert all(v != "2021-08-09" for v in tile_date_variants(photo(0, taken_at=None)))  # always marked
    assert tile_date_variants(photo(1, taken_at=None, mtime_ns=0)) == [""]


def test_no_tile_label_is_cut_off_at_any_zoom_or_width(qtbot, tmp_path, settings, models_dir, photos):  # noqa: F811
    w = make_window(qtbot, settings, tmp_path, models_dir)
    index_folder(qtbot, w, photos)
    search(qtbot, w, "a red car")
    real = w.model.results()
    results = awkward_results() + [replace(r) for r in real[:4]]
    w.model.set_results(results)
    w.model.toggle_group(4)  # an expanded burst: its members carry the "≈" badge
    checked = 0
    for width in (1024, 1280, 1920):
        w.resize(width, 720)
        for size in (96, 128, 160, 200, 256, 320):
            w.settings.thumb_size = size
            w._apply_thumb_size()
            qtbot.wait(1)
            view = w.view
            for row in range(w.model.rowCount()):
                idx = w.model.index(row, 0)
                option = QStyleOptionViewItem()
                option.initFrom(view.viewport())
                option.rect = view.visualRect(idx)
                if option.rect.isEmpty():
                    option.rect = view.visualRect(w.model.index(0, 0))
                texts = w.delegate.tile_texts(option, idx)
                fm = option.fontMetrics
                assert fm.horizontalAdvance(texts["date"]) <= texts["line_width"], (size, texts)
                assert fm.horizontalAdvance(texts["name"]) <= texts["line_width"], (size, texts)
                assert "…" not in texts["date"], (size, texts)  # a marked form always fits, no elision
                if texts["badge"]:
                    bfm = ThumbDelegate._badge_font(option)
                    assert QFontMetrics(bfm).horizontalAdvance(texts["badge"]) <= texts["badge_width"], (
                        size,
                        texts,
                    )
                    assert "…" not in texts["badge"], (size, texts)
                r = w.model.result(row)
                if r.photo.taken_at is None and r.photo.mtime_ns:  # marked as the file's date, or left out
                    assert (
                        "file" in texts["date"] or texts["date"].startswith("~") or texts["date"] == "offline"
                    )
                if r.photo.mtime_ns == 0 and r.photo.taken_at is None:
                    assert texts["date"] == ""
                checked += 1
    assert checked > 18 * 10
    close_window(w)
