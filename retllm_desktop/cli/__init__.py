"""Command-line shell over :class:`retllm_desktop.library.Library` (headless; also what the tests drive).

This module holds the parser and ``main``; each command group lives in its own module with a
``register(subparsers)`` that adds its parsers with ``set_defaults(func=handler)``; a handler takes the
parsed arguments and returns an exit code (see ``common``). Engine errors become one line on stderr.

The global options (``--library``, ``--models``, ``--threads``, …) may also come before the command, with the
same meaning and the same checks; a command that does not take one says so. Only without a command does
the launcher open the app (with ``--library``/``--models``/``--settings``).
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
from . import explain, library, models, people, prepare, search, watch
from .common import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, Parser, add_common_args

__all__ = ["build_parser", "main"]

COMMAND_GROUPS = (library, search, explain, watch, models, people, prepare, eval_cmd)
GLOBAL_PREFIX = "global_"  # top-level copies of the common options live under this dest prefix
APP_ONLY = ("settings",)  # options only the app takes
APP_TAKES = ("library", "models", "settings")  # what a launch without a command passes to the app


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="retllm-desktop",
        description="Private natural-language search over your own photo folders. Without a command, opens the app.",
        epilog="Global options may come before or after the command (retllm-desktop --threads 1 search cat).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    options = parser.add_argument_group("global options (for the app and every command that takes them)")
    add_common_args(options)
    options.add_argument(
        "--settings", metavar="FILE", help="the app's settings file (default: <config dir>/gui.json)"
    )
    for action in options._group_actions:
        if action.nargs != 0 and action.metavar is None:
            action.metavar = action.dest.upper()
        action.dest = GLOBAL_PREFIX + action.dest
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    _mark_leaves(sub)
    return parser


def _mark_leaves(sub: argparse._SubParsersAction) -> None:
    """Each command's parser remembers itself, so global options can be checked against what it takes."""
    for p in sub.choices.values():
        p.set_defaults(_leaf=p, _leaf_name=p.prog.removeprefix("retllm-desktop "))
        for nested in p._actions:
            if isinstance(nested, argparse._SubParsersAction):
                _mark_leaves(nested)


def _global_options(args: argparse.Namespace) -> dict[str, object]:
    """The global options given before the command (dest → value), taken out of ``args``."""
    given: dict[str, object] = {}
    for key in [k for k in vars(args) if k.startswith(GLOBAL_PREFIX)]:
        value = getattr(args, key)
        delattr(args, key)
        dest = key.removeprefix(GLOBAL_PREFIX)
        if value is not None and value is not False:
            given[dest] = value
    return given


def _option_name(parser: argparse.ArgumentParser, dest: str) -> str:
    for a in parser._actions:
        if a.dest == GLOBAL_PREFIX + dest:
            return a.option_strings[0]
    return "--" + dest.replace("_", "-")


def _apply_global_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Options before the command mean what they mean after it (given after as well: the later one wins)."""
    given = _global_options(args)
    leaf: argparse.ArgumentParser | None = getattr(args, "_leaf", None)
    if leaf is None:
        return
    for dest, value in given.items():
        action = next((a for a in leaf._actions if a.dest == dest and a.option_strings), None)
        if action is None or dest in APP_ONLY:
            what = "the app" if dest in APP_ONLY else "other commands"
            parser.error(f"{args._leaf_name} does not take {_option_name(parser, dest)} (it is for {what})")
        if getattr(args, dest, None) == leaf.get_default(dest):  # not given after the command
            setattr(args, dest, value)


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


def _app_argv(args: argparse.Namespace, parser: argparse.ArgumentParser, qt_args: list[str]) -> list[str]:
    """The app's own arguments from a launch without a command; an option only commands take is an error."""
    given = _global_options(args)
    out: list[str] = []
    for dest, value in given.items():
        if dest not in APP_TAKES:
            parser.error(
                f"{_option_name(parser, dest)} needs a command (e.g. retllm-desktop {_option_name(parser, dest)}"
                " ... search TEXT); the app's own choices are in its Settings"
            )
        out += [_option_name(parser, dest), str(value)]
    return out + qt_args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        # no command: the app (arguments argparse does not know are Qt's own, such as -style)
        return launch_gui(_app_argv(args, parser, extra))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _apply_global_options(args, parser)
    setup_logging()
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
