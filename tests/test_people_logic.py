"""People without photos: name matching in queries, name rules, and the clustering on controlled vectors."""

from __future__ import annotations

import numpy as np
import pytest

from retllm_desktop.errors import QueryError
from retllm_desktop.people import chinese_whispers, clean_name, fold_name, nearest
from retllm_desktop.understand import understand
from retllm_desktop.understand_people import find_people

PEOPLE = [
    (1, "Zoë Durand", "zoe durand"),
    (2, "Tom Baker", "tom baker"),
    (3, "Tom Hanks", "tom hanks"),
    (4, "Rose", "rose"),
    (5, "Anna", "anna"),
    (6, "Anna", "anna"),  # two people share a name: the name stands for both
]


def _names(text: str) -> list[tuple[tuple[int, ...], str, str]]:
    return [(m.ids, m.name, text[m.start : m.end]) for m in find_people(text, PEOPLE, ordinary={"rose"})]


def test_full_names_unique_first_names_folded() -> None:
    assert _names("zoe at the beach") == [((1,), "Zoë Durand", "zoe")]
    assert _names("ZOË DURAND in Paris") == [((1,), "Zoë Durand", "ZOË DURAND")]
    assert _names("Zoe Durand's birthday") == [((1,), "Zoë Durand", "Zoe Durand")]
    assert _names("tom at the beach") == []  # two Toms: the first name alone names nobody
    assert _names("tom baker and tom hanks") == [
        ((2,), "Tom Baker", "tom baker"),
        ((3,), "Tom Hanks", "tom hanks"),
    ]
    assert _names("anna skiing") == [((5, 6), "Anna", "anna")]
    assert _names("zoeb") == [] and _names("durand") == []  # whole words; a surname alone is not a first name


def test_an_ordinary_word_is_a_name_only_capitalised() -> None:
    assert _names("rose garden") == []
    assert _names("Rose in the garden") == [((4,), "Rose", "Rose")]
    assert _names("garden with Rose") == [((4,), "Rose", "Rose")]


def test_understand_takes_names_out_of_the_text_and_names_them() -> None:
    u = understand("Zoë and Tom Baker at the beach 2019", None, people=PEOPLE)
    assert u.text == "at the beach" or u.text == "beach" or "beach" in u.text
    assert "Zoë" not in u.text and "Tom" not in u.text and "2019" not in u.text
    assert [p["name"] for p in u.people] == ["Zoë Durand", "Tom Baker"]
    assert u.as_dict()["people"] == [{"ids": [1], "name": "Zoë Durand"}, {"ids": [2], "name": "Tom Baker"}]
    assert [c.kind for c in u.chips] == ["person", "person", "date"]
    kept = understand("Zoë at the beach", None, people=PEOPLE, ignore=["Zoë"])  # the chip was removed
    assert kept.people == [] and "Zoë" in kept.text


def test_names_are_cleaned_and_checked() -> None:
    assert clean_name("  Zoë   Durand ") == "Zoë Durand" == clean_name("Zoë\nDurand")
    assert fold_name("Zoë  DURAND") == "zoe durand"
    for bad in ("", "   ", "a\x1b[31mb", "x" * 81):
        with pytest.raises(QueryError):
            clean_name(bad)


def test_chinese_whispers_separates_tight_groups_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 128)).astype(np.float32)
    centres *= 1.5 / np.linalg.norm(centres, axis=1, keepdims=True)  # far apart (~2.1) vs spread ~0.3
    pts = np.concatenate([c + rng.normal(scale=0.3 / np.sqrt(128), size=(6, 128)) for c in centres]).astype(
        np.float32
    )
    labels = chinese_whispers(pts, 0.5)
    truth = np.repeat(np.arange(4), 6)
    assert len(set(labels.tolist())) == 4
    for k in range(4):
        assert len(set(labels[truth == k].tolist())) == 1
    assert np.array_equal(labels, chinese_whispers(pts, 0.5))
    lone = chinese_whispers(pts, 0.01)  # nothing is close enough: everyone alone
    assert len(set(lone.tolist())) == len(pts)
    idx, dist = nearest(pts[:3], pts[6:])
    assert (idx >= 0).all() and (dist > 1.0).all()
