"""Settings: the search model is picked from the installed ones, a multilingual one named in words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")


def _model(models: Path, name: str, multilingual: bool = False) -> None:
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    d = write_synthetic_clip(models / f".tmp-{name}", "tiny", seed=1, check=False)
    dest = models / "clip" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    d.rename(dest)
    cfg = json.loads((dest / "clip.json").read_text())
    cfg["name"] = name
    if multilingual:
        cfg["multilingual"] = True
    (dest / "clip.json").write_text(json.dumps(cfg))


def test_search_model_choice_lists_installed_models(qtbot, tmp_path):
    from retllm_desktop.gui.settings import Settings
    from retllm_desktop.gui.settings_dialog import SettingsDialog

    models = tmp_path / "models"
    _model(models, "clip-vit-b32")
    _model(models, "clip-multilingual-b32", multilingual=True)
    s = Settings(models_dir=str(models))
    dlg = SettingsDialog(s, str(tmp_path / "lib"), str(models))
    qtbot.addWidget(dlg)
    labels = [dlg.clip.itemText(i) for i in range(dlg.clip.count())]
    assert labels == ["First one found", "clip-multilingual-b32 — any language", "clip-vit-b32"]
    dlg.clip.setCurrentIndex(1)
    assert dlg.apply() is True  # the engine must reopen with the new model
    assert s.clip_model == "clip-multilingual-b32"
    # reopened: the saved choice is selected; a hand-typed folder name is kept as typed
    dlg2 = SettingsDialog(s, str(tmp_path / "lib"), str(models))
    qtbot.addWidget(dlg2)
    assert dlg2.clip.currentData() == "clip-multilingual-b32"
    dlg2.clip.setEditText("my-own-export")
    dlg2.apply()
    assert s.clip_model == "my-own-export"
    dlg2.clip.setCurrentIndex(0)
    dlg2.apply()
    assert s.clip_model is None
