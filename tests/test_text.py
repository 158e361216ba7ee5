"""The text pass with the real PP-OCRv4 ONNX models from the rapidocr-onnxruntime wheel.

Photos are rendered with the FreeType font that ships inside Pillow (no system fonts needed).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from retllm_desktop.cli import main
from retllm_desktop.text_match import parse_text_query

from .conftest import make_photo


def sign(path: Path, text: str, seed: int, size: tuple[int, int] = (480, 360), at=(40, 140)) -> Path:
    """A generated photo with ``text`` on a white board."""
    make_photo(path, seed, size=size)
    img = Image.open(path).convert("RGB")
    font = ImageFont.load_default(size=40)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox(at, text, font=font)
    draw.rectangle((x0 - 12, y0 - 12, x1 + 12, y1 + 12), fill=(250, 250, 245))
    draw.text(at, text, font=font, fill=(15, 15, 20))
    img.save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def ocr():
    from retllm_desktop.models.ocr import OcrModel

    model = OcrModel(threads=1)
    yield model
    model.close()


@pytest.fixture
def text_tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    sign(root / "exit.jpg", "EXIT 7", 1)
    sign(root / "gate.jpg", "Gate 42 Boarding", 2)
    sign(root / "harbour.jpg", "Harbour Cafe", 3)
    sign(root / "other-gate.jpg", "Gate 7", 4)
    for i in range(4):
        make_photo(root / f"plain{i}.jpg", seed=20 + i, size=(480, 360))
    return root


def test_reads_words_with_boxes_and_nothing_on_a_plain_photo(tmp_path: Path, ocr) -> None:
    path = sign(tmp_path / "s.jpg", "Harbour Cafe", 5, at=(60, 200))
    result = ocr.read(Image.open(path))
    assert [line.text for line in result.lines] == ["Harbour Cafe"]
    line = result.lines[0]
    assert line.confidence > 0.8
    assert [w.text for w in line.words] == ["Harbour", "Cafe"]
    # Boxes are fractions of the photo: the first word starts near x = 60/480 and sits around y = 200/360.
    (x0, y0), _, (x2, y2), _ = line.words[0].box
    assert abs(x0 - 60 / 480) < 0.05 and y0 < 225 / 360 < y2
    assert line.words[0].box[1][0] <= line.words[1].box[0][0] + 0.02  # words left to right
    plain = make_photo(tmp_path / "p.jpg", seed=9, size=(480, 360))
    assert ocr.read(Image.open(plain)).lines == []


def test_upside_down_text_is_turned(tmp_path: Path, ocr) -> None:
    path = sign(tmp_path / "s.jpg", "Harbour Cafe", 5)
    upside_down = Image.open(path).rotate(180)
    assert ocr.read(upside_down).text == "Harbour Cafe"


def test_text_pass_incremental_moves_copies_changes(tmp_path: Path, text_tree: Path, library) -> None:
    s = library.index_roots([str(text_tree)])
    assert s.text["read"] == 8 and s.text["with_text"] == 4 and s.text["failed"] == 0
    assert library.status().text == {"read": 8, "with_text": 4, "failed": 0, "pending": 0}
    # Moved and copied photos keep their text: nothing is read again.
    (text_tree / "album").mkdir()
    shutil.move(text_tree / "harbour.jpg", text_tree / "album" / "harbour.jpg")
    shutil.copy(text_tree / "exit.jpg", text_tree / "exit-copy.jpg")
    s = library.index_roots()
    assert s.text["read"] == 0
    top = next(iter(library.search("harbour", top=3))).results[0]
    assert top.path == str(text_tree / "album" / "harbour.jpg") and top.text.snippet == "Harbour Cafe"
    # A changed photo is read again; its old words no longer find it.
    sign(text_tree / "album" / "harbour.jpg", "Lighthouse", 3)
    s = library.index_roots()
    assert s.text["read"] == 1 and s.text["with_text"] == 1
    hits = {r.path for r in next(iter(library.search("harbour", top=9))).results if r.text}
    assert hits == set()
    top = next(iter(library.search("lighthouse", top=3))).results[0]
    assert top.path.endswith("album/harbour.jpg") and top.stage in ("text", "clip+text")


def test_failure_recorded_and_run_continues(text_tree: Path, library) -> None:
    library.index_roots([str(text_tree)], text=False)
    assert library.status().text["pending"] == 8
    (text_tree / "gate.jpg").unlink()  # gone between the CLIP pass and the text pass
    s = library.read_texts()
    assert s.read == 7 and s.failed == 1
    st = library.status()
    assert st.text["failed"] == 1
    [failed] = st.text_failed_files
    assert failed["path"] == str(text_tree / "gate.jpg") and "No such file" in failed["reason"]


def test_cancel_commits_whole_batches_and_resumes(text_tree: Path, library) -> None:
    library.index_roots([str(text_tree)], text=False)
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "reading text" and done >= 3:
            cancel.set()

    from retllm_desktop.text_pass import TextPass

    s = TextPass(library.catalog, library.ocr, batch_size=2).run(progress=progress, cancel=cancel)
    assert s.cancelled and s.read == 3 and s.pending == 5
    assert library.status().text["read"] == 3
    s = library.read_texts()
    assert s.read == 5 and library.status().text == {"read": 8, "with_text": 4, "failed": 0, "pending": 0}


def test_hybrid_ranking_phrases_and_no_text(text_tree: Path, library) -> None:
    library.index_roots([str(text_tree)])
    res = next(iter(library.search("the sign that says exit", top=8))).results
    assert res[0].path.endswith("exit.jpg") and res[0].text.words[0]["text"] == "EXIT"
    # A quoted phrase is that exact phrase: "Gate 7" does not match "gate 42".
    res = next(iter(library.search('"gate 42"', top=8))).results
    assert [r.path.rsplit("/", 1)[1] for r in res if r.text] == ["gate.jpg"]
    both = [r.path.rsplit("/", 1)[1] for r in next(iter(library.search("gate", top=8))).results[:2]]
    assert sorted(both) == ["gate.jpg", "other-gate.jpg"]
    # Without text matching (or for words no photo holds) the order is CLIP's.
    from retllm_desktop.search import Query

    clip_only = [r.path for r in next(iter(library.search(Query("exit", use_text=False), top=8))).results]
    assert all(r.text is None for r in next(iter(library.search(Query("exit", use_text=False)))).results)
    coarse = library.search_coarse(Query("exit", use_text=False), top=8)
    assert clip_only == [r.path for r in coarse.results]
    no_words = [r.path for r in next(iter(library.search("zebra", top=8))).results]
    assert no_words == [r.path for r in library.search_coarse(Query("zebra", use_text=False), top=8).results]


def test_fts_folds_diacritics_and_prefixes(library) -> None:
    cat = library.catalog
    with cat.transaction():
        cat.put_text("h1", "m", "Café Münster\nReceipts", "cafemunster\nreceipts", "[]")
        cat.put_text("h2", "m", "EMERGENCYEXIT", "emergencyexit", "[]")
    q = parse_text_query("cafe munster receipt")
    assert [h for h, _, _ in cat.search_text(q.fts(), q.substrings())] == ["h1"]
    q = parse_text_query("exit")
    assert [h for h, _, _ in cat.search_text(q.fts(), q.substrings())] == ["h2"]
    assert q.coverage("EMERGENCYEXIT") == 0.5 and q.coverage("Exit 3") == 1.0
    assert cat.search_text('"unbalanced', []) == []  # FTS syntax errors never surface


def test_cli_index_search_json_and_status(text_tree: Path, tmp_path: Path, clip_models_dir, capsys) -> None:
    args = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]
    assert main(["index", str(text_tree), "--no-text", *args]) == 0
    capsys.readouterr()
    assert main(["status", *args]) == 0
    assert "text: 0 photos read, 0 with text, 8 to read" in capsys.readouterr().out
    assert main(["index", "--json", *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["text"]["read"] == 8 and summary["text"]["with_text"] == 4
    assert main(["search", "harbour", "--json", "--top", "3", *args]) == 0
    top = json.loads(capsys.readouterr().out)["results"][0]
    assert top["path"].endswith("harbour.jpg")
    assert top["match_stage"] in ("text", "clip+text") and top["matched_text"] == "Harbour Cafe"
    assert top["matched_words"] == ["Harbour"] and top["text_match"]["coverage"] == 1.0
    assert main(["search", "harbour", "--json", "--no-text", *args]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert all(r["match_stage"] == "clip" and r["matched_text"] is None for r in results)
    assert main(["status", *args]) == 0
    assert "text: 8 photos read, 4 with text" in capsys.readouterr().out


def test_text_match_outside_the_clip_window_comes_in_with_its_clip_score(
    text_tree: Path, library, monkeypatch
) -> None:
    from retllm_desktop import search
    from retllm_desktop.search import Query

    library.index_roots([str(text_tree)])
    monkeypatch.setattr(search, "TEXT_WINDOW", 1)
    outside = 0
    for word, name in (("harbour", "harbour.jpg"), ("exit", "exit.jpg"), ("boarding", "gate.jpg")):
        clip = library.search_coarse(Query(word, use_text=False), top=8).results
        res = library.search_coarse(Query(word), top=2).results
        assert res[0].path == str(text_tree / name)
        if clip[0].path != res[0].path:  # not in the one-photo CLIP window: found by its text alone
            outside += 1
            assert res[0].stage == "text"
            assert res[0].score == pytest.approx(
                next(r.score for r in clip if r.path == res[0].path), abs=1e-5
            )
    assert outside  # the random-weight CLIP does not put all three first


def test_coverage_carriers_short_words_and_partial_matches() -> None:
    from retllm_desktop.text_match import fused_scores

    q = parse_text_query("the sign that says EXIT")
    assert q.coverage("EXIT 7") == 1.0  # "sign" is what carries the words, not one of them
    assert parse_text_query("sign").coverage("SIGN IN") == 1.0  # alone, it is the word looked for
    assert parse_text_query("receipt from Lidl").coverage("LIDL Filiale 42") == 1.0
    assert parse_text_query("a cat").coverage("Catalogue") == 0.0  # short words match whole words
    assert parse_text_query("harbour").coverage("HARBOURSIDE") == 1.0
    assert parse_text_query("gate").coverage("investigate") == 0.5
    cup = parse_text_query("a cup of coffee")
    assert cup.coverage("Coffee 2.50") == 0.5
    # Half the words found weighs a quarter: the CLIP #1 stays ahead of a weak text-only match.
    scores = fused_scores({"a": 1, "b": 150}, {"b": 1}, {"b": cup.coverage("Coffee 2.50")})
    assert scores["a"] > scores["b"]
    scores = fused_scores({"a": 1, "b": 150}, {"b": 1}, {"b": 1.0})
    assert scores["b"] > scores["a"]
