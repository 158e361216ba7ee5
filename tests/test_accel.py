"""Hardware choice: CoreML / Metal on a Mac when the builds have them, the CPU otherwise and as fallback.

Nothing here runs on a Mac: the selection is tested as a function of what the builds report, and the
CoreML fallback by making the CoreML session fail (the one thing that cannot exist on this machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from retllm_desktop.models import accel
from retllm_desktop.models.clip.towers import ClipModel, find_clip_model

MAC_BUILD = ["CoreMLExecutionProvider", "CPUExecutionProvider"]


def test_onnx_providers() -> None:
    assert accel.onnx_providers(MAC_BUILD, "darwin", {}) == [
        "CoreMLExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert accel.onnx_providers(["CPUExecutionProvider"], "darwin", {}) == ["CPUExecutionProvider"]
    assert accel.onnx_providers(MAC_BUILD, "linux", {}) == ["CPUExecutionProvider"]
    assert accel.onnx_providers(MAC_BUILD, "darwin", {"RETLLM_CPU_ONLY": "1"}) == ["CPUExecutionProvider"]
    # this machine's real onnxruntime build
    assert accel.onnx_providers(ort.get_available_providers())[-1] == "CPUExecutionProvider"


def test_llama_gpu_layers() -> None:
    assert accel.llama_gpu_layers(True, "darwin", {}) == -1  # everything on Metal
    assert accel.llama_gpu_layers(False, "darwin", {}) == 0  # a CPU-only build on a Mac
    assert accel.llama_gpu_layers(True, "linux", {}) == 0
    assert accel.llama_gpu_layers(True, "darwin", {"RETLLM_CPU_ONLY": "yes"}) == 0


@pytest.fixture
def as_mac(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """onnxruntime as on a Mac: CoreML listed; a CoreML session fails to compile the model."""
    real = ort.InferenceSession
    tried: list[list[str]] = []

    def session(path, sess_options=None, providers=None, **kw):
        tried.append(list(providers or []))
        if providers and "CoreMLExecutionProvider" in providers:
            raise RuntimeError("CoreML: unsupported operator")
        return real(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(accel.sys, "platform", "darwin")
    monkeypatch.setattr(ort, "get_available_providers", lambda: MAC_BUILD)
    monkeypatch.setattr(ort, "InferenceSession", session)
    return tried


def test_clip_falls_back_to_the_cpu_when_coreml_fails(clip_models_dir: Path, as_mac: list[list[str]]) -> None:
    clip = ClipModel(find_clip_model(clip_models_dir), threads=1).load()
    try:
        vec = clip.encode_texts(["a red car"])[0]
    finally:
        clip.close()
    assert np.isfinite(vec).all() and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
    assert ["CoreMLExecutionProvider", "CPUExecutionProvider"] in as_mac  # CoreML was tried first
    assert as_mac[-1] == ["CPUExecutionProvider"]
