"""The LLM stage's shape: one module touches llama.cpp internals; the byte-bounded LRU behaves."""

import ast
import re
from pathlib import Path

import retllm_desktop
from retllm_desktop.models.llm.lru import ByteLRU

INTERNALS = re.compile(r"^(_ctx|n_tokens|kv_cache_seq_rm|llama_state_.*|mtmd.*|ggml_abort_callback)$")


def _identifiers(tree: ast.AST):
    """Names used in code (attributes, variables, imports), never the text of strings or comments."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, (node.module or "").rsplit(".", 1)[-1]
            for a in node.names:
                yield node.lineno, a.name


PKG = Path(retllm_desktop.__file__).parent


def test_only_the_session_module_touches_llama_internals():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel == "models/llm/session.py":
            continue
        for n, name in _identifiers(ast.parse(path.read_text(encoding="utf-8"))):
            if INTERNALS.match(name):
                offenders.append(f"{rel}:{n}: {name}")
    assert offenders == []


def _imported_modules(source: str, module: str):
    """(line, absolute module) for every import in ``source``, the code of ``module`` (dotted name, an
    ``__init__`` named by its package); relative imports are resolved against it."""
    package = module.split(".")[:-1]  # "a.b.c" lives in a.b; "a.b.__init__" is a.b itself
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            if node.module:
                yield node.lineno, f"{base}.{node.module}" if base else node.module
            else:
                for a in node.names:
                    yield node.lineno, f"{base}.{a.name}"


def test_the_model_rooms_never_reach_back_up():
    """Data flows one way (scan → embed → index → search → rerank → view): the models (CLIP, OCR, LLM, the
    hub) know nothing of the catalog, search, rerank or the shells; they use config, errors, imaging and
    each other."""
    allowed = {
        "retllm_desktop",
        "retllm_desktop.__version__",
        "retllm_desktop.config",
        "retllm_desktop.errors",
    }
    allowed.add("retllm_desktop.imaging")
    offenders = []
    for path in sorted((PKG / "models").rglob("*.py")):
        module = ".".join(("retllm_desktop", *path.relative_to(PKG).with_suffix("").parts))
        for n, target in _imported_modules(path.read_text(encoding="utf-8"), module):
            inside = target == "retllm_desktop.models" or target.startswith("retllm_desktop.models.")
            if target.startswith("retllm_desktop") and not inside and target not in allowed:
                offenders.append(f"{path.relative_to(PKG).as_posix()}:{n}: {target}")
    assert offenders == []


def test_the_import_reading_resolves_relative_imports():
    """The check above is only as good as its reading of relative imports: a reach-back is seen as one."""
    source = (
        "from ...search import Query\nfrom ..clip import towers\nfrom ... import config, library\nimport os\n"
    )
    found = [m for _, m in _imported_modules(source, "retllm_desktop.models.llm.scorer")]
    assert found == [
        "retllm_desktop.search",
        "retllm_desktop.models.clip",
        "retllm_desktop.config",
        "retllm_desktop.library",
        "os",
    ]
    found = [
        m
        for _, m in _imported_modules(
            "from .towers import ClipModel\n", "retllm_desktop.models.clip.__init__"
        )
    ]
    assert found == ["retllm_desktop.models.clip.towers"]


def test_byte_lru_evicts_least_recent_by_bytes():
    lru: ByteLRU[bytes] = ByteLRU(10, len)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.get("a") == b"1234"  # a is now the most recent
    lru.put("c", b"1234")  # 12 bytes > 10: the least recent (b) goes
    assert "b" not in lru and "a" in lru and "c" in lru
    assert lru.total_bytes == 8
    lru.put("a", b"123456789")  # replacing counts the new size; c goes, a stays even alone over the bound
    assert len(lru) == 1 and lru.total_bytes == 9
    lru.put("big", b"x" * 50)  # the newest entry always stays
    assert len(lru) == 1 and lru.get("big") is not None
    assert lru.pop("big") is not None and lru.total_bytes == 0
