"""The model registry: shipped TOML files are consistent; parsing, lookups and presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from retllm_desktop.models.clip.towers import ClipConfig
from retllm_desktop.models.hub.registry import RegistryError, load_registry


def test_shipped_registry_is_consistent():
    reg = load_registry()
    assert {"fast", "balanced", "best"} <= set(reg.presets)
    assert reg.default_preset in reg.presets
    for preset in reg.presets.values():
        clip, mllm = reg.preset_models(preset.name)
        assert clip.role == "clip" and mllm.role == "mllm"
    for e in reg.by_role("clip"):
        cfg = ClipConfig.from_dict(e.config_data())  # a valid clip.json
        own_tokenizer = {cfg.tokenizer.file} if cfg.tokenizer else set()
        assert {f.name for f in e.files} == {"image.onnx", "text.onnx"} | own_tokenizer
        assert cfg.name == e.name and cfg.image_model == "image.onnx"
        assert not e.export or (e.export["arch"] and e.export["pretrained"])
        assert e.licence and e.size_mb
        # every entry says which published numbers it was chosen by, and where they come from
        assert e.published and e.published.get("source"), e.name
    mllms = reg.by_role("mllm")
    assert mllms, "MLLM entries come from resources/mllm_models.toml"
    for e in mllms:
        assert [f.name for f in e.files] == ["model.gguf", "mmproj.gguf"]
        data = e.config_data()
        assert data["model"] == "model.gguf" and data["mmproj"] == "mmproj.gguf" and data["handler"]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


CLIP_TOML = """
default_preset = "small"
[presets.small]
clip = "c1"
mllm = "m1"
[presets.cliponly]
clip = "c2"

[[clip]]
name = "c1"
hf_repo = "org/c1"
revision = "abc123"
size_mb = 2
files = [
  { name = "image.onnx", path = "onnx/vision.onnx", size = 10, sha256 = "%s" },
  { name = "text.onnx", path = "onnx/text.onnx" },
]
config = { embed_dim = 64, image_size = 64 }
export = { arch = "ViT-B-32", pretrained = "openai" }

[[clip]]
name = "c2"
hf_repo = "org/c2"
files = [ { name = "image.onnx", path = "a" }, { name = "text.onnx", path = "b" } ]
config = { embed_dim = 8, image_size = 32 }
""" % ("ab" * 32)

MLLM_TOML = """
default = "m1"
[[model]]
name = "m1"
handler = "qwen25vl"
hf_repo = "org/m1-GGUF"
gguf = "m1-Q4_K_M.gguf"
mmproj = "mmproj-m1.gguf"
size_mb = 100
mmproj_size_mb = 20
licence = "Apache-2.0"
image_max_side = 448
"""


def test_parse_lookups_and_presets(tmp_path):
    reg = load_registry([_write(tmp_path, "a.toml", CLIP_TOML), _write(tmp_path, "b.toml", MLLM_TOML)])
    c1 = reg.get("c1")
    assert c1.revision == "abc123" and c1.files[0].size == 10 and c1.files[0].sha256 == "ab" * 32
    assert c1.files[1].size is None and c1.export == {"arch": "ViT-B-32", "pretrained": "openai"}
    assert [e.name for e in reg.resolve("small")] == ["c1", "m1"]
    assert [e.name for e in reg.resolve(None)] == ["c1", "m1"]  # the default preset
    assert [e.name for e in reg.resolve("cliponly")] == ["c2"]
    assert [e.name for e in reg.resolve("m1")] == ["m1"]
    m1 = reg.get("m1")
    assert m1.role == "mllm" and m1.size_mb == 120 and reg.default_mllm == "m1"
    assert [(f.name, f.path) for f in m1.files] == [
        ("model.gguf", "m1-Q4_K_M.gguf"),
        ("mmproj.gguf", "mmproj-m1.gguf"),
    ]
    assert m1.config_data()["handler"] == "qwen25vl" and m1.config_data()["image_max_side"] == 448
    assert m1.config_filename == "mllm.json" and c1.config_filename == "clip.json"
    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        reg.resolve("nope")
    with pytest.raises(RegistryError, match="unknown preset"):
        reg.preset("nope")


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[clip]]\nname="x"\nhf_repo="o/x"\nfiles=[]\nconfig={embed_dim=1, image_size=1}\n', "must provide"),
        (
            '[[clip]]\nname="x"\nhf_repo="o/x"\nfiles=[{name="image.onnx", path="a"}, {name="text.onnx", path="b"}]\nconfig={image_size=1}\n',
            "embed_dim",
        ),
        (
            '[[clip]]\nname="x"\nhf_repo="o/x"\nfiles=[{name="../image.onnx", path="a"}]\nconfig={embed_dim=1, image_size=1}\n',
            "plain file name",
        ),
        (
            '[[clip]]\nname="x"\nhf_repo="o/x"\nfiles=[{name="image.onnx", path="a", sha256="xyz"}, {name="text.onnx", path="b"}]\nconfig={embed_dim=1, image_size=1}\n',
            "64 hex",
        ),
        ('[presets.p]\nclip="missing"\n', "unknown model"),
        ('default_preset="nope"\n', "not a preset"),
        ("this is = = not toml", "cannot read"),
    ],
)
def test_malformed_registry(tmp_path, text, message):
    with pytest.raises(RegistryError, match=message):
        load_registry([_write(tmp_path, "bad.toml", text)])


def test_preset_role_checked_and_later_file_wins(tmp_path):
    bad = _write(tmp_path, "p.toml", '[presets.p]\nclip="m1"\n')
    with pytest.raises(RegistryError, match="not a clip model"):
        load_registry([_write(tmp_path, "b.toml", MLLM_TOML), bad])
    override = _write(tmp_path, "o.toml", CLIP_TOML.replace('hf_repo = "org/c2"', 'hf_repo = "mirror/c2"'))
    reg = load_registry(
        [_write(tmp_path, "a.toml", CLIP_TOML), _write(tmp_path, "b.toml", MLLM_TOML), override]
    )
    assert reg.get("c2").hf_repo == "mirror/c2"
    with pytest.raises(RegistryError, match="not found"):
        load_registry([tmp_path / "missing.toml"])


def test_presets_are_pinned_to_commits_and_hashes():
    """Every file of the three presets has a commit revision, a sha256 and an exact size."""
    reg = load_registry()
    for preset in set(reg.presets) - {"multilingual"}:  # its search model has no published pins
        for e in reg.preset_models(preset):
            assert e.pinned, f"{preset}: {e.name} is not pinned"
            assert len(e.revision) == 40 and e.revision != "main"
            for f in e.files:
                assert f.sha256 and len(f.sha256) == 64
                if e.name != "clip-vit-l14":  # its text tower's byte count was not published
                    assert f.size and f.size > 1_000_000
                # the approximate sizes agree with the pinned ones (catches a pin for another file)
            if e.size_mb:
                assert abs(e.approx_bytes / 1e6 - e.size_mb) / e.size_mb < 0.05, e.name


def test_unpinned_entries_are_marked_so():
    reg = load_registry()
    unpinned = {e.name for e in reg if not e.pinned}
    # clip-multilingual-b32: no published hashes of Immich's exports were found (see resources/models.toml)
    assert unpinned == {"clip-vit-b16", "llava-1.5-7b", "clip-multilingual-b32"}
    for name in unpinned:
        e = reg.get(name)
        assert e.unpinned_files and e.as_dict()["pinned"] is False
    assert reg.get("smolvlm-500m").as_dict()["pinned"] is True


def test_new_coarse_entries_are_pinned_to_cited_files():
    """SigLIP 2 and MobileCLIP: every file (tokenizer included) pinned; sizes agree with size_mb."""
    reg = load_registry()
    for name in ("siglip2-b16", "mobileclip-s0"):
        e = reg.get(name)
        assert e.pinned and len(e.revision) == 40
        assert all(f.sha256 and f.size for f in e.files)
        assert abs(e.approx_bytes / 1e6 - e.size_mb) / e.size_mb < 0.05
    assert {f.name for f in reg.get("siglip2-b16").files} == {"image.onnx", "text.onnx", "tokenizer.json"}
    multi = reg.get("clip-multilingual-b32")
    assert reg.preset("multilingual").clip == multi.name and multi.config.get("multilingual") is True


def test_a_tokenizer_named_in_config_must_be_downloaded(tmp_path):
    bad = CLIP_TOML.replace(
        "config = { embed_dim = 8, image_size = 32 }",
        'config = { embed_dim = 8, image_size = 32, tokenizer = { file = "tokenizer.json" } }',
    )
    with pytest.raises(RegistryError, match="tokenizer.json"):
        load_registry([_write(tmp_path, "m.toml", bad)])
