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


def test_scorer_imports_kept_for_other_modules():
    from retllm_desktop.models.llm.cache import EmbeddingCache  # noqa: F401
    from retllm_desktop.models.llm.scorer import MllmConfig, MllmScorer, find_mllm_model  # noqa: F401


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
