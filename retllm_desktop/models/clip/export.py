"""Convert an open_clip model to the ONNX model folder layout of :mod:`retllm_desktop.models.clip.towers`.

Needs the ``export`` extra (torch, torchvision, open_clip_torch, onnx): ``pip install -e '.[export]'``.
Only the export needs torch; the app runs the result with onnxruntime alone.

    from retllm_desktop.models.clip.export import export_clip
    export_clip("ViT-B-32", "openai", Path("models"))   # -> models/clip/ViT-B-32-openai/

``pretrained=None`` exports random weights (no download), which is what the parity test uses.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import RetllmError
from .tokenizer import VOCAB_FILENAME, ClipTokenizer
from .towers import CONFIG_FILENAME, ClipConfig, ClipModel, preprocess_image

PARITY_TOLERANCE = 1e-4


def _import_export_deps():
    try:
        import onnx
        import open_clip
        import torch
    except ImportError as e:
        raise RetllmError(
            f"exporting CLIP models needs torch, open_clip_torch and onnx ({e.name} is missing): "
            "pip install -e '.[export]'"
        ) from e
    return torch, open_clip, onnx


def _default_name(arch: str, pretrained: str | None) -> str:
    tag = pretrained or "random"
    if "/" in tag or tag.endswith((".pt", ".bin", ".safetensors")):
        tag = Path(tag).stem
    return f"{arch}-{tag}"


def export_clip(
    arch: str,
    pretrained: str | None,
    out_models_dir: Path,
    name: str | None = None,
    opset: int = 17,
    check: bool = True,
    n_check_images: int = 4,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Export ``open_clip`` model ``arch`` (weights ``pretrained``) to ``<out>/clip/<name>/``.

    Writes image.onnx, text.onnx, clip.json and the tokenizer vocab. With ``check`` compares onnxruntime
    against torch on random images and texts (embeddings, L2-normalized) and our numpy preprocessing and
    tokenizer against open_clip's; the numbers are returned (and printed with ``verbose``).
    """
    torch, open_clip, onnx = _import_export_deps()
    t0 = time.perf_counter()
    name = name or _default_name(arch, pretrained)
    model_dir = Path(out_models_dir) / "clip" / name
    model_dir.mkdir(parents=True, exist_ok=True)

    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device="cpu")
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    if not isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer) or getattr(
        tokenizer, "reduction_fn", None
    ):
        raise RetllmError(
            f"{arch} uses tokenizer {type(tokenizer).__name__}; only the OpenAI CLIP BPE tokenizer is supported"
        )
    if tokenizer.clean_fn is not open_clip.tokenizer._clean_lower:
        raise RetllmError(f"{arch} uses a non-default text cleaning; only clean='lower' is supported")

    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp.get("size", 224)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise RetllmError(f"{arch}: non-square image size {size} is not supported")
        size = size[0]
    context_length = int(getattr(model, "context_length", None) or tokenizer.context_length or 77)
    embed_dim = int(model.encode_text(tokenizer(["a"], context_length=context_length)).shape[-1])

    class ImageTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.encode_image(pixel_values, normalize=False)

    class TextTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m.encode_text(input_ids, normalize=False)

    image_path = model_dir / "image.onnx"
    text_path = model_dir / "text.onnx"
    dummy_pixels = torch.randn(2, 3, size, size)
    dummy_ids = tokenizer(["a photo of a dog", "a cat"], context_length=context_length)
    # nn.MultiheadAttention's fused inference fast path (aten::_native_multi_head_attention) has no ONNX
    # symbolic: disable it and trace with grad enabled (the fast path is only taken under no_grad).
    mha = getattr(torch.backends, "mha", None)
    fastpath_was = mha.get_fastpath_enabled() if mha is not None else None
    if mha is not None:
        mha.set_fastpath_enabled(False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # legacy exporter: dynamo=False
        warnings.filterwarnings("ignore", message=".*aten::index.*")  # argmax pooling indices are >= 0
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape asserts become constants
        try:
            torch.onnx.export(
                ImageTower(model).eval(),
                (dummy_pixels,),
                str(image_path),
                input_names=["pixel_values"],
                output_names=["image_embeds"],
                dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
            torch.onnx.export(
                TextTower(model).eval(),
                (dummy_ids,),
                str(text_path),
                input_names=["input_ids"],
                output_names=["text_embeds"],
                dynamic_axes={"input_ids": {0: "batch"}, "text_embeds": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        finally:
            if mha is not None:
                mha.set_fastpath_enabled(fastpath_was)
    for p in (image_path, text_path):
        onnx.checker.check_model(str(p))

    cfg = ClipConfig(
        name=name,
        embed_dim=embed_dim,
        image_size=int(size),
        mean=tuple(float(v) for v in pp.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
        std=tuple(float(v) for v in pp.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
        resize_mode=str(pp.get("resize_mode", "shortest")),
        interpolation=str(pp.get("interpolation", "bicubic")),
        context_length=context_length,
        fill_color=int(pp.get("fill_color", 0)),
        extra={
            "source": {
                "kind": "open_clip",
                "arch": arch,
                "pretrained": pretrained,
                "open_clip_version": getattr(open_clip, "__version__", None),
                "torch_version": torch.__version__,
                "opset": opset,
            }
        },
    )
    if cfg.interpolation not in ("bicubic", "bilinear"):
        cfg.interpolation = "bicubic"  # open_clip maps 'random' to bicubic at eval time
    cfg.save(model_dir)
    vocab_src = Path(open_clip.tokenizer.default_bpe())
    shutil.copyfile(vocab_src, model_dir / VOCAB_FILENAME)

    result: dict[str, Any] = {
        "model_dir": model_dir,
        "name": name,
        "arch": arch,
        "pretrained": pretrained,
        "embed_dim": embed_dim,
        "image_size": int(size),
        "export_seconds": round(time.perf_counter() - t0, 2),
    }
    if check:
        result.update(
            check_parity(model, preprocess, tokenizer, model_dir, torch, n_images=n_check_images, seed=seed)
        )
        result["ok"] = bool(
            result["image_max_abs_diff"] < PARITY_TOLERANCE
            and result["text_max_abs_diff"] < PARITY_TOLERANCE
            and result["preprocess_max_abs_diff"] < 1e-5
            and result["tokenizer_equal"]
        )
    if verbose:
        for k, v in result.items():
            print(f"{k}: {v}")
    return result


def parity_images(n: int, seed: int = 0):
    """Random PIL test images of assorted sizes/aspect ratios (smooth-ish so resizing matters)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = [(300, 200), (180, 320), (224, 224), (97, 63), (640, 480), (250, 251)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR)
        noise = rng.integers(-20, 21, (h, w, 3))
        out.append(
            Image.fromarray(np.clip(np.asarray(img).astype(int) + noise, 0, 255).astype(np.uint8), "RGB")
        )
    return out


PARITY_TEXTS = [
    "a photo of a dog",
    "Two kids building a sandcastle at the beach, summer 2019!",
    "東京の夜景 🌃",
    "",
    "a very long caption " * 30,
]


def check_parity(
    model, preprocess, tokenizer, model_dir: Path, torch, n_images: int = 4, seed: int = 0
) -> dict:
    """Max abs differences torch vs onnxruntime (normalized embeddings) and numpy vs torch preprocessing."""
    images = parity_images(n_images, seed)
    cfg = ClipConfig.load(model_dir)
    torch_pixels = torch.stack([preprocess(img) for img in images])
    np_pixels = np.stack([preprocess_image(img, cfg) for img in images])
    pp_diff = float(np.abs(torch_pixels.numpy() - np_pixels).max())

    ids_ref = tokenizer(PARITY_TEXTS, context_length=cfg.context_length)
    ours = ClipTokenizer(model_dir / VOCAB_FILENAME, context_length=cfg.context_length)
    tok_equal = bool(np.array_equal(ours(PARITY_TEXTS), ids_ref.numpy()))

    with torch.no_grad():
        ref_img = model.encode_image(torch_pixels, normalize=True).numpy()
        ref_txt = model.encode_text(ids_ref, normalize=True).numpy()
        raw_img = model.encode_image(torch_pixels, normalize=False).numpy()
    with ClipModel(model_dir) as onnx_model:
        got_img = onnx_model.encode_images(torch_pixels.numpy())
        got_txt = onnx_model.encode_texts(PARITY_TEXTS)
        got_img_np = onnx_model.encode_images(np_pixels)
        sess, (in_name, out_name) = onnx_model._image()
        (got_raw,) = sess.run([out_name], {in_name: torch_pixels.numpy()})
    return {
        "image_max_abs_diff": float(np.abs(ref_img - got_img).max()),
        "image_raw_max_abs_diff": float(np.abs(raw_img - got_raw).max()),
        "image_via_numpy_preprocess_max_abs_diff": float(np.abs(ref_img - got_img_np).max()),
        "text_max_abs_diff": float(np.abs(ref_txt - got_txt).max()),
        "preprocess_max_abs_diff": pp_diff,
        "tokenizer_equal": tok_equal,
        "config_file": str(model_dir / CONFIG_FILENAME),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m retllm_desktop.models.clip.export")
    parser.add_argument("arch", help="open_clip architecture, e.g. ViT-B-32")
    parser.add_argument("pretrained", nargs="?", default=None, help="open_clip pretrained tag or file")
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder (default: models)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args(argv)
    res = export_clip(
        args.arch, args.pretrained, args.out, name=args.name, opset=args.opset, check=not args.no_check
    )
    return 0 if res.get("ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
