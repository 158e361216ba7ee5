"""Published chat templates of the registry's MLLMs, byte-exact (sources in SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent

# registry model name -> template file stem (the family's published template)
FOR_MODEL = {
    "smolvlm-500m": "smolvlm",
    "smolvlm-256m": "smolvlm",
    "qwen2.5-vl-3b": "qwen2.5-vl",
    "qwen2.5-vl-7b": "qwen2.5-vl",
    "gemma-3-4b": "gemma-3",
    "llava-1.5-7b": "llava-1.5",
}


def names() -> list[str]:
    """Stems of every stored template."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.jinja"))


def load(name: str) -> str:
    """The exact template string for a file stem or a registry model name."""
    stem = FOR_MODEL.get(name, name)
    path = TEMPLATE_DIR / f"{stem}.jinja"
    if not path.is_file():
        raise KeyError(f"no stored chat template {name!r} (have: {', '.join(names())})")
    return path.read_bytes().decode("utf-8")
