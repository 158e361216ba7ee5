"""The setup dialog's download UI against the loopback server of test_download (127.0.0.1 only)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import hashlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QLabel, QMessageBox, QProgressBar, QPushButton  # noqa: E402

from retllm_desktop.gui.setup_dialog import SetupDialog, human_size  # noqa: E402
from retllm_desktop.models.clip.towers import ClipModel, find_clip_model  # noqa: E402

from .test_download import _hermetic_env, server  # noqa: E402, F401 - fixtures

REPO = "test-org/tiny-clip"
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def served_clip(server, tmp_path: Path, monkeypatch):  # noqa: F811
    """A synthetic CLIP served as a pinned registry entry; the registry file names it."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    src = write_synthetic_clip(tmp_path / "src", "tiny", seed=0, check=False)
    lines = []
    for ours in ("image.onnx", "text.onnx"):
        data = (src / ours).read_bytes()
        server.state.files[f"/{REPO}/resolve/{REV}/onnx/{ours}"] = data
        sha = hashlib.sha256(data).hexdigest()
        lines.append(f'{{ name = "{ours}", path = "onnx/{ours}", size = {len(data)}, sha256 = "{sha}" }}')
    registry = tmp_path / "registry.toml"
    registry.write_text(
        "schema = 1\n[[clip]]\n"
        f'name = "tiny-clip"\nhf_repo = "{REPO}"\nrevision = "{REV}"\nlicence = "MIT"\n'
        f'description = "a test model"\nfiles = [{", ".join(lines)}]\n'
        "config = { embed_dim = 64, image_size = 64 }\n"
    )
    monkeypatch.setenv("RETLLM_HF_ENDPOINT", server.url)
    return src, registry


def _widgets(dlg: SetupDialog) -> tuple[QPushButton, QProgressBar]:
    (button,) = [b for b in dlg.findChildren(QPushButton) if b.accessibleName() == "Download tiny-clip"]
    (bar,) = [
        b for b in dlg.findChildren(QProgressBar) if b.accessibleName() == "Download progress of tiny-clip"
    ]
    return button, bar


def test_download_from_the_dialog_installs_a_working_model(qtbot, served_clip, tmp_path: Path) -> None:
    src, registry = served_clip
    models = tmp_path / "models"
    dlg = SetupDialog(str(models), "no search model (CLIP) found", None, registry=[registry])
    qtbot.addWidget(dlg)
    dlg.show()
    (info,) = [w.text() for w in dlg.findChildren(QLabel) if "<b>tiny-clip</b>" in w.text()]
    total = sum((src / f).stat().st_size for f in ("image.onnx", "text.onnx"))
    assert info == f"<b>tiny-clip</b> ({human_size(total)} · MIT)<br>a test model"  # pinned: not "unverified"
    assert "no search model" in dlg.problem.text()
    button, bar = _widgets(dlg)
    assert not bar.isVisible()
    with qtbot.waitSignal(dlg.models_changed, timeout=60_000) as sig:
        button.click()
        assert button.text() == "Cancel" and bar.isVisible()
    assert sig.args == [str(models)]
    assert bar.format() == "Downloaded" and not button.isEnabled()
    with ClipModel(find_clip_model(models, "tiny-clip"), threads=1) as got, ClipModel(src, threads=1) as ref:
        np.testing.assert_allclose(
            got.encode_texts(["a red car"]), ref.encode_texts(["a red car"]), atol=1e-6
        )


def test_a_failed_download_says_why_and_offers_retry(qtbot, served_clip, server, tmp_path, monkeypatch):  # noqa: F811
    _src, registry = served_clip
    server.state.status[f"/{REPO}/resolve/{REV}/onnx/image.onnx"] = 404
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text: warnings.append(text))
    dlg = SetupDialog(str(tmp_path / "models"), None, None, registry=[registry])
    qtbot.addWidget(dlg)
    dlg.show()
    button, bar = _widgets(dlg)
    changed: list[str] = []
    dlg.models_changed.connect(changed.append)
    button.click()
    qtbot.waitUntil(lambda: bool(warnings), timeout=60_000)
    assert warnings[0].startswith("tiny-clip: ") and "404" in warnings[0]
    assert button.text() == "Retry" and not bar.isVisible() and not changed
    assert not (tmp_path / "models" / "clip" / "tiny-clip" / "clip.json").exists()  # not taken for a model


def test_unreadable_registry_is_explained(qtbot, tmp_path: Path) -> None:
    bad = tmp_path / "registry.toml"
    bad.write_text("[[clip]\n")
    dlg = SetupDialog(str(tmp_path / "models"), None, None, registry=[bad])
    qtbot.addWidget(dlg)
    assert dlg.entries == [] and "could not be read" in dlg.download_note
    assert any("Downloading from here is not possible" in w.text() for w in dlg.findChildren(QLabel))
