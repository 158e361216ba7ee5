"""The prepare pass in the app (issue 18): a background worker, its status-bar words, its settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from retllm_desktop.gui.prepare_controller import PrepareController, about_seconds, ready_text  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402
from retllm_desktop.library import Library  # noqa: E402
from tests.conftest import make_photo  # noqa: E402
from tests.test_replicas import mllm_sources, replica  # noqa: E402,F401 - the fixture

pytestmark = pytest.mark.usefixtures("mllm_sources")


def test_words_on_screen():
    assert about_seconds(4.2) == "about 4 s" and about_seconds(21) == "about 20 s"
    assert about_seconds(200) == "about 3 min"
    assert ready_text(1) == "1 photo ready for quick checks"
    assert ready_text(12, 340) == "Preparing photos for quick checks: 12 of 340"


def test_the_background_pass_prepares_and_says_so(qtbot, tmp_path, clip_models_dir):
    from PySide6.QtWidgets import QWidget

    models = tmp_path / "models"
    (models / "mllm").mkdir(parents=True)
    os.symlink(clip_models_dir / "clip", models / "clip")
    os.symlink(replica("smolvlm-500m"), models / "mllm" / "smolvlm-500m")
    for i in range(3):
        make_photo(tmp_path / "photos" / f"p{i}.jpg", seed=i, size=(320, 240))
    host = QWidget()
    qtbot.addWidget(host)
    pc = PrepareController(host, idle_seconds=0.3)
    with Library(tmp_path / "lib", models_dir=models, threads=2) as lib:
        lib.index_roots([str(tmp_path / "photos")], text=False)
        pc.start(lib)
        assert pc.pending and not pc.running  # not at once: after the app stayed idle a while
        pc.stop()  # e.g. indexing started
        qtbot.wait(700)
        assert not pc.pending and not pc.running and lib.status().prepared_photos == 0
        with qtbot.waitSignal(pc.finished, timeout=120_000) as got:
            pc.start(lib)
            pc.poke()  # a search pushes the start back; it still comes
            pc.start(lib)  # a second start while one waits (or runs) is a no-op
        assert got.args[0].photos == 3
        assert pc.label.text() == "3 photos ready for quick checks" and not pc.label.isHidden()
        assert lib.status().prepared_photos == 3
        pc.enabled = False
        pc.start(lib)
        assert not pc.running
        pc.pool.wait(10_000)


def test_settings_keep_detail_and_budget(tmp_path):
    s = Settings(path=tmp_path / "gui.json")
    s.llm_detail, s.prepare, s.prepare_budget_bytes = "full", False, 123
    s.save()
    back = Settings.load(tmp_path / "gui.json")
    assert (back.llm_detail, back.prepare, back.prepare_budget_bytes) == ("full", False, 123)
    (tmp_path / "bad.json").write_text('{"llm_detail": "huge", "prepare_budget_bytes": -5}')
    bad = Settings.load(tmp_path / "bad.json")
    assert bad.llm_detail == "auto" and bad.prepare_budget_bytes == 0


def test_settings_dialog_detail_change_reopens_the_library(qtbot, tmp_path):
    from retllm_desktop.gui.settings_dialog import SettingsDialog

    s = Settings(path=Path(tmp_path) / "gui.json")
    d = SettingsDialog(s, str(tmp_path), str(tmp_path))
    qtbot.addWidget(d)
    d.detail.setCurrentIndex(d.detail.findData("standard"))
    d.prepare.setChecked(False)
    assert d.apply() is True
    assert s.llm_detail == "standard" and s.prepare is False
