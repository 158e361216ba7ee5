"""One app window per library: a second launch on the same library brings the first window to the front.

Two apps watching and writing one library would index every new photo twice and fight over the writer
lock. The first app listens on a local socket (a Unix socket / Windows named pipe, never the network) whose
name is derived from the library's real path and the user; a second launch connects, asks the first to come
to the front, and exits. A socket left behind by a crashed app is noticed (nobody answers) and replaced.
"""

from __future__ import annotations

import getpass
import hashlib
import os

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QWidget

RAISE = b"raise\n"


def server_name(library_path: str) -> str:
    """A short, stable name for this user's app on this library (socket names have length limits)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    key = f"{user}\0{os.path.realpath(os.path.expanduser(library_path))}".encode()
    return "retllm-desktop-" + hashlib.sha256(key).hexdigest()[:20]


def ask_running_app_to_raise(library_path: str, timeout_ms: int = 1500) -> bool:
    """True when an app is already open on this library (it was asked to come to the front)."""
    sock = QLocalSocket()
    sock.connectToServer(server_name(library_path))
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(RAISE)
    sock.flush()
    sock.waitForBytesWritten(timeout_ms)
    sock.waitForReadyRead(timeout_ms)  # the first app answers once it has raised its window
    sock.disconnectFromServer()
    return True


class SingleInstance(QObject):
    """The first app's side: listens for later launches and emits :attr:`raise_requested`."""

    raise_requested = Signal()

    def __init__(self, library_path: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(library_path)
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._on_connection)

    def listen(self) -> bool:
        """Start listening; False when a live app already listens on this library's name.

        Qt replaces an existing socket file when it listens with access options (it renames a new socket
        over it), so a live app is looked for first: only a file nobody answers on is taken over.
        """
        probe = QLocalSocket()
        probe.connectToServer(self.name)
        if probe.waitForConnected(500):
            probe.abort()
            return False
        QLocalServer.removeServer(self.name)  # left behind by an app that crashed
        return self._server.listen(self.name)

    def follow(self, library_path: str) -> bool:
        """The window switched to another library (Settings): listen under that library's name instead."""
        name = server_name(library_path)
        if name == self.name and self._server.isListening():
            return True
        self._server.close()
        self.name = name
        return self.listen()

    def close(self) -> None:
        self._server.close()

    def _on_connection(self) -> None:
        while self._server.hasPendingConnections():
            sock = self._server.nextPendingConnection()
            sock.readyRead.connect(lambda s=sock: self._on_message(s))
            sock.disconnected.connect(sock.deleteLater)

    def _on_message(self, sock: QLocalSocket) -> None:
        if bytes(sock.readAll().data()).startswith(RAISE.strip()):
            self.raise_requested.emit()
            sock.write(b"ok\n")
            sock.flush()


def bring_to_front(window: QWidget) -> None:
    """Un-minimise, raise and activate (window managers may only flash the taskbar entry instead)."""
    if window.isMinimized():
        window.showNormal()
    window.show()
    window.raise_()
    window.activateWindow()
