"""One app per library: a second launch on the same library brings the first window to the front and exits."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QWidget  # noqa: E402

from retllm_desktop.gui.single_instance import (  # noqa: E402
    SingleInstance,
    ask_running_app_to_raise,
    bring_to_front,
    server_name,
)


def test_a_second_launch_on_the_same_library_raises_the_first(qtbot, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    guard = SingleInstance(str(lib))
    assert guard.listen()
    raised: list[int] = []
    guard.raise_requested.connect(lambda: raised.append(1))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "RETLLM_GUI_SETTINGS": str(tmp_path / "gui.json")}
    env.pop("RETLLM_LIBRARY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "retllm_desktop", "--library", str(lib) + "/", "--models", str(tmp_path / "m")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=90_000)  # our event loop answers it
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "already open on this library" in out and "brought it to the front" in out
    assert raised == [1]
    # another library is another app; the same folder written differently is the same library
    assert server_name(str(tmp_path / "other")) != guard.name
    assert server_name(str(lib / ".." / "lib")) == guard.name
    assert not ask_running_app_to_raise(str(tmp_path / "other"), timeout_ms=300)
    guard.close()
    assert not ask_running_app_to_raise(str(lib), timeout_ms=300)  # closed: the next launch opens the app


def test_a_socket_left_by_a_crashed_app_does_not_block_the_next_one(qtbot, tmp_path: Path) -> None:
    lib = str(tmp_path / "lib")
    first = SingleInstance(lib)
    assert first.listen()
    path = first._server.fullServerName()
    first.close()
    # what a killed app leaves behind: the socket file, with nobody listening on it
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    assert os.path.exists(path)
    second = SingleInstance(lib)
    assert second.listen()  # stale socket noticed and replaced
    third = SingleInstance(lib)
    assert not third.listen()  # a live one is never taken over
    # switching the window to another library moves the name with it
    assert second.follow(str(tmp_path / "other"))
    assert SingleInstance(lib).listen() and not SingleInstance(str(tmp_path / "other")).listen()
    second.close()


def test_bring_to_front_restores_a_minimised_window(qtbot) -> None:
    w = QWidget()
    qtbot.addWidget(w)
    w.showMinimized()
    bring_to_front(w)
    assert w.isVisible() and not w.isMinimized()
