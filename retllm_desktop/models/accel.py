"""Which hardware runs the models: Apple's CoreML / Metal on a Mac when present, the CPU everywhere else.

Pure functions of what the installed onnxruntime / llama.cpp builds report, so the choice is testable on
any machine. ``RETLLM_CPU_ONLY=1`` forces the CPU (e.g. to compare results, or when a GPU driver misbehaves).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

COREML = "CoreMLExecutionProvider"
CPU = "CPUExecutionProvider"


def cpu_only(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("RETLLM_CPU_ONLY", "").strip().lower() in ("1", "true", "yes")


def onnx_providers(
    available: Sequence[str], system: str | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """onnxruntime execution providers in order of preference: CoreML first on macOS when this build has
    it (onnxruntime then runs the nodes CoreML cannot on the CPU), the CPU always last as the fallback."""
    system = sys.platform if system is None else system
    providers = []
    if system == "darwin" and COREML in available and not cpu_only(env):
        providers.append(COREML)
    providers.append(CPU)
    return providers


def llama_gpu_layers(
    supports_offload: bool, system: str | None = None, env: Mapping[str, str] | None = None
) -> int:
    """llama.cpp layers to offload: all of them (-1) to Metal on a Mac whose llama.cpp build can offload,
    none elsewhere (the Linux/Windows wheels here are CPU builds; a CUDA build is not assumed to fit)."""
    system = sys.platform if system is None else system
    if system == "darwin" and supports_offload and not cpu_only(env):
        return -1
    return 0
