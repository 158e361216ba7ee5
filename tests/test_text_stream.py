"""The LLM's output bytes become clean text: characters split across tokens join, invalid bytes vanish."""

from __future__ import annotations

from retllm_desktop.models.llm.text_stream import Utf8Stream


def stream(*chunks: bytes) -> str:
    s = Utf8Stream()
    return "".join(s.feed(c) for c in chunks) + s.finish()


def test_characters_split_across_tokens_are_joined() -> None:
    data = "Café 🐈 in Kraków".encode()
    assert stream(*(data[i : i + 1] for i in range(len(data)))) == "Café 🐈 in Kraków"
    s = Utf8Stream()
    assert s.feed("é".encode()[:1]) == ""  # waits for the second byte instead of showing a box
    assert s.feed("é".encode()[1:]) == "é"


def test_invalid_bytes_and_replacement_characters_never_show() -> None:
    out = stream(
        b"a cat\xff\xfe on", b" a \xc3", b"(sofa)", "\ufffd".encode(), b" \xed\xa0\x80x", b"\xe2\x82"
    )
    assert "\ufffd" not in out
    assert out == "a cat on a (sofa) x"
    assert stream(b"\x00\x07bell\x1b[31m") == "bell[31m"  # control characters (an ANSI escape) dropped
    assert stream(b"one\r\ntwo\tthree") == "one\ntwo three"  # the caller still sees the line break
