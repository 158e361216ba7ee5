"""Work-arounds for Qt binding bugs.

PySide6 6.12.0 (seen with CPython 3.11) drops one reference to the bool that ``SignalInstance.emit()``
returns, on every Python-side emit: after a few hundred emits ``True`` reaches refcount 0 and the
interpreter aborts ("Fatal Python error: bool_dealloc"). :func:`emit` gives that reference back, and
only when a probe at import time shows the binding has the bug, so a fixed PySide costs nothing.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


class _Probe(QObject):
    sig = Signal()


def _probe() -> bool:
    p = _Probe()
    before = sys.getrefcount(True) + sys.getrefcount(False)
    r = p.sig.emit()
    del r
    lost = before - (sys.getrefcount(True) + sys.getrefcount(False))
    if lost > 0:  # give back what the probe itself lost
        for _ in range(lost):
            _incref(True)
        return True
    return False


EMIT_LEAKS_BOOL = _probe()


def emit(signal: Any, *args: Any) -> Any:
    """``signal.emit(*args)`` without the PySide refcount bug (safe from any thread)."""
    r = signal.emit(*args)
    if EMIT_LEAKS_BOOL and isinstance(r, bool):
        _incref(r)
    return r
