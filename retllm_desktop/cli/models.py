"""`retllm-desktop models …`: list, download, verify, remove, path, add, export-clip."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from .. import config
from ..errors import CancelledError, RetllmError
from .common import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, EXIT_USAGE, print_json


def _models_args(p: argparse.ArgumentParser, registry: bool = False) -> None:
    p.add_argument(
        "--models", metavar="DIR", help="models folder (default: $RETLLM_MODELS, ./models, user data dir)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    if registry:
        p.add_argument(
            "--registry",
            metavar="TOML",
            action="append",
            help="registry file(s) to use instead of resources/models.toml + mllm_models.toml",
        )


def register(sub) -> None:
    models = sub.add_parser("models", help="list, download, verify and remove models")
    models.set_defaults(func=lambda args: _usage(models))
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")

    p = msub.add_parser("list", help="registry models and presets, and what is installed")
    _models_args(p, registry=True)
    p.set_defaults(func=cmd_list)

    p = msub.add_parser("download", help="download a model or a preset (default: the default preset)")
    _models_args(p, registry=True)
    p.add_argument(
        "names", nargs="*", metavar="NAME|PRESET", help="model or preset names (fast, balanced, best)"
    )
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help="Hugging Face endpoint or mirror (default: $RETLLM_HF_ENDPOINT or the Hub)",
    )
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="also download models whose files the registry pins no sha256 for (recorded as unverified)",
    )
    p.set_defaults(func=cmd_download)

    p = msub.add_parser(
        "verify", help="re-hash installed models against their download records and the registry's pins"
    )
    _models_args(p, registry=True)
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=cmd_verify)

    p = msub.add_parser("remove", help="delete an installed model (linked local files are left alone)")
    _models_args(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=["clip", "mllm"], help="when a CLIP and an LLM share the name")
    p.set_defaults(func=cmd_remove)

    p = msub.add_parser("path", help="print the models folder")
    _models_args(p)
    p.set_defaults(func=cmd_path)

    p = msub.add_parser("add", help="register model files you already have (symlinked, not copied)")
    _models_args(p)
    p.add_argument("--clip", metavar="DIR", help="a CLIP folder (clip.json + image.onnx + text.onnx)")
    p.add_argument("--mllm", metavar="GGUF", help="the multimodal LLM's text-model GGUF")
    p.add_argument("--mmproj", metavar="GGUF", help="its vision projector (mmproj) GGUF")
    p.add_argument(
        "--handler",
        default="gguf-template",
        choices=["gguf-template", "qwen25vl", "llava15"],
        help="chat handler of the LLM (see resources/mllm_models.toml)",
    )
    p.add_argument("--name", help="name to install under (default: from clip.json / the GGUF file name)")
    p.set_defaults(func=cmd_add)

    p = msub.add_parser("export-clip", help="convert an open_clip model to ONNX (needs the export extra)")
    p.add_argument("out", metavar="OUT", nargs="?", help="models folder to write into (default: --models)")
    _models_args(p)
    p.add_argument("--arch", required=True, help="open_clip architecture, e.g. ViT-B-32")
    p.add_argument(
        "--pretrained", default=None, help="open_clip pretrained tag, e.g. openai (default: random)"
    )
    p.add_argument("--name", default=None, help="model folder name (default: ARCH-PRETRAINED)")
    p.add_argument("--no-check", action="store_true", help="skip the torch vs onnxruntime parity check")
    p.set_defaults(func=cmd_export_clip)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def _models_dir(args) -> Path:
    return config.models_dir(args.models)


def _registry(args):
    from ..models.hub.registry import load_registry

    return load_registry(args.registry if getattr(args, "registry", None) else None)


def _mb(n: float | None) -> str:
    if not n:
        return "?"
    return f"{n / 1000:.1f} GB" if n >= 1000 else f"{n:.0f} MB"


def cmd_list(args) -> int:
    from ..models.hub.installed import installed_models

    reg = _registry(args)
    mdir = _models_dir(args)
    installed = installed_models(mdir)
    by_key = {(m.role, m.name): m for m in installed}
    if args.json:
        print_json(
            {
                "models_dir": str(mdir),
                "default_preset": reg.default_preset,
                "presets": {
                    p.name: {"clip": p.clip, "mllm": p.mllm, "description": p.description}
                    for p in reg.presets.values()
                },
                "registry": [
                    {
                        **e.as_dict(),
                        "installed": bool(by_key.get((e.role, e.name)) and by_key[(e.role, e.name)].complete),
                    }
                    for e in reg
                ],
                "installed": [m.as_dict() for m in installed],
            }
        )
        return EXIT_OK
    print(f"models folder: {mdir}")
    print("presets:")
    for p in reg.presets.values():
        star = " (default)" if p.name == reg.default_preset else ""
        print(f"  {p.name:<9} clip={p.clip}  mllm={p.mllm or '-'}{star}  {p.description}")
    print("available (pinned: commit + sha256 checked; unverified: needs --allow-unverified):")
    for e in reg:
        m = by_key.get((e.role, e.name))
        state = "installed" if m and m.complete else ("partial" if m else "")
        if m and m.complete and m.verified is False:
            state += " (unverified)"
        pin = "pinned" if e.pinned else "unverified"
        print(f"  {e.role:<4} {e.name:<20} {_mb(e.size_mb):>8}  {e.licence or '?':<12} {pin:<10} {state}")
    known = {(e.role, e.name) for e in reg}
    others = [m for m in installed if (m.role, m.name) not in known]
    if others:
        print("other installed models:")
        for m in others:
            state = "" if m.complete else " (partial)"
            state += " (unverified)" if m.verified is False else ""
            print(f"  {m.role:<4} {m.name:<20} {m.size_bytes / 1e6:8.0f} MB  {m.source}{state}")
    return EXIT_OK


class _ByteProgress:
    """One-line byte progress on stderr (TTY only)."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.t0 = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.monotonic() - self.t0, 1e-6)
        width = 30
        filled = int(width * done / total) if total else 0
        eta = (total - done) / rate if rate > 0 and total else 0
        sys.stderr.write(
            f"\r{self.label:<20} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done / 1e6:8.1f}/{total / 1e6:.1f} MB {rate / 1e6:6.1f} MB/s ETA {eta:4.0f}s"
        )
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_download(args) -> int:
    from ..models.hub.download import download_model
    from ..models.hub.registry import find_entries

    reg = _registry(args)
    entries = find_entries(reg, args.names) if args.names else reg.resolve(None)
    mdir = _models_dir(args)
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        cancel.set()
        signal.signal(signal.SIGINT, previous)

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_sigint)
    done: list[dict] = []
    try:
        for e in entries:
            bar = _ByteProgress(e.name, enabled=not args.json and sys.stderr.isatty())
            try:
                path = download_model(
                    e,
                    mdir,
                    progress=bar,
                    cancel=cancel,
                    base_url=args.endpoint,
                    verify_existing=True,
                    allow_unverified=args.allow_unverified,
                )
            finally:
                bar.finish()
            done.append({"name": e.name, "role": e.role, "path": str(path), "verified": e.pinned})
            if not args.json:
                print(f"{e.role} model {e.name}: {path}" + ("" if e.pinned else " (unverified)"))
    except CancelledError as err:
        if args.json:
            print_json({"installed": done, "cancelled": True, "message": str(err)})
        else:
            print(f"retllm-desktop: {err}", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if args.json:
        print_json({"installed": done, "cancelled": False})
    return EXIT_OK


def cmd_verify(args) -> int:
    from ..models.hub.installed import verify_models

    try:
        registry = _registry(args)
    except RetllmError:
        registry = None  # still check the files against their download records
    results = verify_models(_models_dir(args), args.names or None, registry=registry)
    bad = [r for r in results if r.status in ("corrupt", "missing", "partial", "mismatch")]
    if args.json:
        print_json({"models": [r.as_dict() for r in results], "ok": not bad})
    else:
        if not results:
            print(f"no models installed in {_models_dir(args)}")
        for r in results:
            print(f"{r.role:<4} {r.name:<24} {r.status}" + (f"  ({r.detail})" if r.detail else ""))
        if bad:
            print("re-download broken models with `retllm-desktop models download NAME`", file=sys.stderr)
    return EXIT_ERROR if bad else EXIT_OK


def cmd_remove(args) -> int:
    from ..models.hub.installed import remove_model

    path = remove_model(_models_dir(args), args.name, role=args.role)
    if args.json:
        print_json({"removed": str(path)})
    else:
        print(f"removed {path}")
    return EXIT_OK


def cmd_path(args) -> int:
    mdir = _models_dir(args)
    if args.json:
        print_json({"models_dir": str(mdir), "clip": str(mdir / "clip"), "mllm": str(mdir / "mllm")})
    else:
        print(mdir)
    return EXIT_OK


def cmd_add(args) -> int:
    from ..models.hub.installed import add_local_clip, add_local_mllm

    if not args.clip and not args.mllm:
        raise RetllmError("say what to add: --clip DIR, or --mllm GGUF --mmproj GGUF")
    if args.clip and args.mllm:
        raise RetllmError("add one model at a time (--clip or --mllm)")
    mdir = _models_dir(args)
    if args.clip:
        path, role = add_local_clip(args.clip, mdir, args.name), "clip"
    else:
        if not args.mmproj:
            raise RetllmError("--mllm needs --mmproj (the vision projector GGUF)")
        path, role = add_local_mllm(args.mllm, args.mmproj, mdir, args.name, handler=args.handler), "mllm"
    if args.json:
        print_json({"role": role, "name": path.name, "path": str(path)})
    else:
        print(f"added {role} model {path.name}: {path} (files symlinked)")
    return EXIT_OK


def cmd_export_clip(args) -> int:
    from ..models.hub.transport import is_offline, raise_offline

    if args.pretrained and is_offline():  # open_clip would fetch the pretrained weights
        raise_offline(f"cannot fetch the {args.arch} / {args.pretrained} weights that export-clip converts")
    from ..models.clip import export

    out = Path(args.out) if args.out else _models_dir(args)
    res = export.export_clip(
        args.arch, args.pretrained, out, name=args.name, check=not args.no_check, verbose=False
    )
    diff = max(res.get("image_max_abs_diff", 0.0), res.get("text_max_abs_diff", 0.0))
    if args.json:
        print_json(res)
    else:
        print(f"exported {res.get('name')} to {res.get('model_dir') or out / 'clip' / str(res.get('name'))}")
        if "image_max_abs_diff" in res:
            print(
                f"parity vs torch: max abs diff {diff:.2e} (image {res['image_max_abs_diff']:.2e}, "
                f"text {res['text_max_abs_diff']:.2e})" + ("" if res.get("ok", True) else " — FAILED")
            )
    return EXIT_OK if res.get("ok", True) else EXIT_ERROR
