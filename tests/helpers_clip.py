"""Shared helpers for the CLIP tests (fixtures live in the test files; tests/conftest.py is not ours)."""

from __future__ import annotations

import json
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
TOKENIZER_CASES = DATA_DIR / "tokenizer_cases.json"

# Texts whose open_clip.tokenize ids are committed in tests/data/tokenizer_cases.json.
# Regenerate with: .venv-export/bin/python tests/helpers_clip.py
TOKENIZER_TEXTS: list[str] = [
    "a photo of a dog",
    "A Photo Of A DOG on the BEACH",
    "Hello, world! How's it going? (fine...) -- yes; no: maybe?!",
    "my 2 kids at the 2019 birthday party, 3.14 pi and 1,000,000 balloons #42",
    "I'm sure they're here, we've seen it, she'll come, he'd go, it's John's car",
    "sunset 🌅 at the beach 🏖️ with my 🐶 ❤️",
    "東京タワーの夜景 和 北京的长城 서울 야경",
    "café crème brûlée in Zürich, naïve façade, São Paulo, Ærøskøbing",
    "Tom &amp; Jerry &lt;3 &quot;cartoon&quot; &amp;amp; double-escaped &#39;quotes&#39;",
    "  lots   of\twhitespace \n and\r\nnewlines   ",
    "",
    "   ",
    "mojibake: The Mona Lisa doesnâ€™t have eyebrows.",
    "snake_case camelCase URL https://example.com/path?q=1&x=2 email a.b@c.de",
    "<start_of_text> literal special tokens <end_of_text>",
    "ÀÉÎÕÜ UPPER ACCENTS ß ẞ İstanbul",
    "Ελληνικά Русский текст عربى עברית हिन्दी ไทย",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    " ".join(["a long caption about a family trip to the mountains with snow and a red car"] * 8),
    "!!!???...,,,;;;:::---___+++===***&&&%%%$$$###@@@",
    "<b>bold</b> rock &amp;amp; roll &amp;lt;3 fish &amp; chips",  # literal '<': ftfy leaves entities
]


def load_tokenizer_cases() -> list[dict]:
    return json.loads(TOKENIZER_CASES.read_text(encoding="utf-8"))["cases"]


def _regenerate() -> None:  # pragma: no cover - needs open_clip (the export venv)
    import open_clip

    ids = open_clip.tokenize(TOKENIZER_TEXTS).numpy()
    cases = []
    for text, row in zip(TOKENIZER_TEXTS, ids, strict=True):
        n = int((row != 0).sum())
        cases.append({"text": text, "ids": [int(v) for v in row[:n]]})
    payload = {
        "generator": f"open_clip {open_clip.__version__} open_clip.tokenize(texts) (context_length 77, "
        "trailing zero padding stripped)",
        "context_length": 77,
        "cases": cases,
    }
    lines = [json.dumps(c, ensure_ascii=False) for c in cases]  # one case per line: reviewable diffs
    head = json.dumps({k: v for k, v in payload.items() if k != "cases"}, ensure_ascii=False)[:-1]
    text = head + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n"
    json.loads(text)
    TOKENIZER_CASES.write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} cases to {TOKENIZER_CASES}")


if __name__ == "__main__":  # pragma: no cover
    _regenerate()
