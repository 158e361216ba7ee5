"""``run_app(argv)``: create the QApplication and the main window (``python main.py`` without arguments)."""

from __future__ import annotations

import argparse
import signal
import sys

from .. import __version__
from . import preflight


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retllm-desktop", description="RetLLM Desktop (the app)")
    p.add_argument("--library", metavar="DIR", help="library folder for this session")
    p.add_argument("--models", metavar="DIR", help="models folder for this session")
    p.add_argument("--settings", metavar="FILE", help="settings file (default: <config dir>/gui.json)")
    return p


def run_app(argv: list[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(list(argv or []))
    problem = preflight.check()  # before Qt: its own failure is an abort with a wall of text
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from .. import config
    from ..logs import setup_logging
    from .main_window import MainWindow
    from .settings import Settings
    from .single_instance import SingleInstance, ask_running_app_to_raise, bring_to_front

    setup_logging()

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication([sys.argv[0] if sys.argv else "retllm-desktop", *qt_args])
    app.setApplicationName("RetLLM Desktop")
    app.setApplicationDisplayName("RetLLM Desktop")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("retllm-desktop")
    app.setDesktopFileName("retllm-desktop")
    settings = Settings.load(args.settings)
    library_path = str(config.library_dir(args.library or settings.library))
    if ask_running_app_to_raise(library_path):
        print(f"RetLLM Desktop is already open on this library ({library_path}); brought it to the front.")
        return 0
    guard = SingleInstance(library_path, app)
    if not guard.listen() and ask_running_app_to_raise(library_path):  # another launch won the race
        print(f"RetLLM Desktop is already open on this library ({library_path}); brought it to the front.")
        return 0
    # The platform style and palette are kept as they are, so the app follows the system light/dark scheme.
    window = MainWindow(settings, library=args.library, models_dir=args.models)
    guard.raise_requested.connect(lambda: bring_to_front(window))
    window.library_opened.connect(lambda lib: guard.follow(str(lib.path)))
    window.show()
    signal.signal(signal.SIGINT, lambda *_: window.close())  # Ctrl+C in the terminal closes cleanly
    wake = QTimer()  # lets the Python signal handler run while Qt's event loop waits
    wake.timeout.connect(lambda: None)
    wake.start(250)
    return int(app.exec())


def main() -> int:
    return run_app(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
