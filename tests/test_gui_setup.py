"""The first-run dialog (pytest-qt): presets first, with size, licence and free disk; single models under
"Advanced"; no commands, module names or paths in its text; a preset downloads from a loopback server."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import re  # noqa: E402
import shutil  # noqa: E402
from collections import namedtuple  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QLabel, QWidget  # noqa: E402

from retllm_desktop.gui import setup_dialog as sd  # noqa: E402
from retllm_desktop.models.hub.registry import load_registry  # noqa: E402

from .test_download import _hermetic_env, server  # noqa: E402,F401 - fixtures
from .test_setup_dialog import served_clip  # noqa: E402,F401 - fixture

FORBIDDEN = [
    re.compile(
        r"retllm-desktop|retllm_desktop|python -m|devtools|\.py\b|\.toml\b|README"
    ),  # commands, modules
    re.compile(r"(^|[\s(])--[a-z]"),  # command-line options
    re.compile(r"(^|[\s(>])(~/|/[a-z]|[A-Za-z]:\\)"),  # raw paths
    re.compile(r"//"),
]


def all_text(dlg: QWidget) -> list[str]:
    texts = [dlg.windowTitle()]
    for w in dlg.findChildren(QLabel):
        texts += [w.text(), w.toolTip()]
    for w in dlg.findChildren(QAbstractButton):
        texts += [w.text(), w.toolTip()]
    return [t for t in texts if t]


def test_presets_are_the_main_choice_with_size_licence_and_disk(qtbot, tmp_path):
    models = tmp_path / "my models"
    dlg = sd.SetupDialog(str(models), "no CLIP model: run `retllm-desktop models download`", "no LLM", None)
    qtbot.addWidget(dlg)
    dlg.show()
    reg = load_registry()
    assert list(dlg.preset_buttons) == list(reg.presets)
    assert {"fast", "balanced", "best"} <= set(reg.presets)
    texts = {n: lab.text() for n, lab in dlg.preset_labels.items()}
    assert "Fast (the default: smallest download)" in texts["fast"]
    # no card calls itself recommended; the one that checks slower says so and no card contradicts it
    assert not any("recommended" in t for t in texts.values())
    # (with the default photo detail Fast's checker sees the photo once at 512 px, Balanced at 448 px)
    assert "several times less than with Balanced" in texts["fast"] and "about 16 s" in texts["balanced"]
    assert not any("faster than Fast" in t or "as fast as Fast" in t for t in texts.values())
    for name in reg.presets:
        total = sum(m.approx_bytes for m in reg.preset_models(name))
        assert f"{sd.human_size(total)} in all" in texts[name]
        assert "Licences:" in texts[name] and "free" in texts[name]
        assert dlg.preset_buttons[name].isEnabled()
    assert "Non-commercial use only" in texts["balanced"] and "Qwen Research License" in texts["balanced"]
    for name in reg.presets:  # said exactly where a model's licence is non-commercial (7B: Apache-2.0)
        nc = any("non-commercial" in (m.licence or "").lower() for m in reg.preset_models(name))
        assert ("Non-commercial use only" in texts[name]) == nc
    # single models are there, folded away under "Advanced"
    assert not dlg.advanced.isVisible() and dlg.findChildren(QAbstractButton, "") is not None
    qtbot.mouseClick(dlg.advanced_toggle, Qt.MouseButton.LeftButton)
    assert dlg.advanced.isVisible()
    assert any("<b>clip-vit-b32</b>" in t for t in all_text(dlg))
    # plain words only: no commands, module names or paths (the engine's error said a command)
    for text in all_text(dlg):
        for pattern in FORBIDDEN:
            assert not pattern.search(text), (pattern.pattern, text)
        assert str(models) not in text
    assert "Open models folder" in [b.text() for b in dlg.findChildren(QAbstractButton)]
    dlg.close()


def test_a_preset_that_does_not_fit_on_the_disk_cannot_start(qtbot, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 300_000_000, 300_000_000))
    dlg = sd.SetupDialog(str(tmp_path / "models"), None, None, None)
    qtbot.addWidget(dlg)
    assert dlg.preset_buttons["fast"].isEnabled() is False  # 0.7 GB + margin > 300 MB free
    assert "Not enough free disk space" in dlg.preset_labels["fast"].text()
    assert "300.0 MB free" in dlg.preset_labels["fast"].text()
    dlg.close()


def test_one_click_downloads_the_preset(qtbot, tmp_path, served_clip):  # noqa: F811
    _src, registry = served_clip
    text = registry.read_text().replace(
        "schema = 1\n",
        'schema = 1\ndefault_preset = "fast"\n[presets.fast]\ndescription = "A tiny test set (~0.1 MB)"\n'
        'clip = "tiny-clip"\n',
        1,
    )
    registry.write_text(text)
    models = tmp_path / "models"
    dlg = sd.SetupDialog(str(models), "no CLIP model", None, None, registry=[registry])
    qtbot.addWidget(dlg)
    label = dlg.preset_labels["fast"].text()
    assert "A tiny test set" in label and "~0.1 MB" not in label and "Fast (the default" in label
    with qtbot.waitSignal(dlg.models_changed, timeout=60_000) as sig:
        qtbot.mouseClick(dlg.preset_buttons["fast"], Qt.MouseButton.LeftButton)
        assert dlg.preset_buttons["fast"].text() == "Cancel"
    assert sig.args == [str(models)]
    assert (models / "clip" / "tiny-clip" / "clip.json").is_file()
    assert dlg.preset_buttons["fast"].text() == "Installed" and not dlg.preset_buttons["fast"].isEnabled()
    # reopened, the dialog knows the set is installed
    again = sd.SetupDialog(str(models), None, None, None, registry=[registry])
    qtbot.addWidget(again)
    assert "Installed." in again.preset_labels["fast"].text() and not again.preset_buttons["fast"].isEnabled()
    dlg.close()
    again.close()


def test_without_the_model_list_the_dialog_still_offers_local_folders(qtbot, tmp_path):
    bad = tmp_path / "registry.toml"
    bad.write_text("[[clip]\n")
    dlg = sd.SetupDialog(str(tmp_path), "no CLIP model", None, None, registry=[bad])
    qtbot.addWidget(dlg)
    assert dlg.preset_buttons == {}
    assert any("could not be read" in t for t in all_text(dlg))
    assert {"Use a models folder…", "Add a model folder…", "Open models folder"} <= set(dlg.local_buttons)
    dlg.close()
