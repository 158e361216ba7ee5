"""Command-line shell over :class:`retllm_desktop.library.Library` (headless; also what the tests drive).

This module holds the parser and ``main``; each command group lives in its own module with a
``register(subparsers)`` that adds its parsers with ``set_defaults(func=handler)``; a handler takes the
parsed arguments and returns an exit code (see ``common``). Engine errors become one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence

from .. import __version__
from ..catalog import is_damage
from ..errors import RetllmError
from ..logs import setup_logging
from . import eval as eval_cmd
from . import explain, library, models, search, watch
from .common import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, EXIT_USAGE, Parser

__all__ = ["build_parser", "main"]

COMMAND_GROUPS = (library, search, explain, watch, models, eval_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="retllm-desktop",
        description="Private natural-language search over your own photo folders. Without a command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def launch_gui(argv: Sequence[str] = ()) -> int:
    # Imported here: Qt is only needed (and only installed for) the desktop app, not for headless use.
    try:
        from ..gui.app import run_app
    except ImportError as e:
        print(
            f"retllm-desktop: the desktop app is not available ({e}); see --help for commands",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return run_app(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return launch_gui(argv)  # the app, with its own options (--library, --models, --settings)
    args = parser.parse_args(argv)
    setup_logging()
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except RetllmError as e:
        print(f"retllm-desktop: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.DatabaseError as e:  # corruption met outside the catalog's own checks
        if not is_damage(e):
            raise
        print(
            f"retllm-desktop: error: the library catalog is damaged ({e}); run `retllm-desktop repair`",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("retllm-desktop: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # e.g. `search ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
