"""Work-arounds for Qt binding bugs that corrupt the interpreter.

PySide6 6.12.0 (seen with CPython 3.11) returns ``None`` from every C++ ``void`` method without the
reference it owes (``label.setText(...)``, ``pool.start(...)``, ``mutex.lock()`` each drop one), and
``SignalInstance.emit()`` likewise drops one reference to the ``True``/``False`` it returns. On
CPython 3.12+ those objects are immortal (PEP 683) so nothing happens; on 3.11 their reference counts
only fall, and after some tens of thousands of Qt calls the app aborts with "Fatal Python error:
none_dealloc" (or "bool_dealloc") — the crash after removing a folder during a search was this: that
path makes many Qt calls from several threads. No object of ours was freed twice.

At import, :func:`probe_void_leak` calls a ``void`` method and :func:`_probe_emit_leak` an ``emit``; when
the binding drops references, :func:`immortalize` gives ``None``/``True``/``False`` what 3.12 gives them:
a reference count so high that no number of dropped references can bring it to zero. A fixed binding
(or 3.12+) is detected and left alone. :func:`emit` also gives ``emit``'s reference back (kept for
bindings whose objects could not be made immortal).
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None

IMMORTAL_REFCOUNT = 1 << 60  # ~1e18: out of reach of any number of dropped references, far from overflow


class _Probe(QObject):
    sig = Signal()


def _probe_emit_leak() -> bool:
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


def probe_void_leak(calls: int = 64) -> int:
    """References to ``None`` a ``void`` Qt method drops per call (0 on a sound binding)."""
    o = QObject()
    before = sys.getrefcount(None)
    for _ in range(calls):
        o.setObjectName("probe")
    lost = before - sys.getrefcount(None)
    for _ in range(max(lost, 0)):  # give back what the probe itself lost
        _incref(None)
    return max(lost, 0) // calls


def _refcount_cell(obj: object) -> ctypes.c_ssize_t | None:
    """The object's reference count field, when this interpreter's layout is the plain one (3.11, not a
    debug build: ``ob_refcnt`` first). Checked against ``sys.getrefcount`` before anything is written."""
    if sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):
        return None
    cell = ctypes.c_ssize_t.from_address(id(obj))
    if cell.value != sys.getrefcount(obj) - 1:  # getrefcount counts its own argument
        return None
    return cell


def immortalize(*objs: object) -> bool:
    """Make ``objs`` (None, True, False) as good as immortal, as PEP 683 does from 3.12 on."""
    ok = True
    for obj in objs:
        cell = _refcount_cell(obj)
        if cell is None:
            ok = False
            continue
        if cell.value < IMMORTAL_REFCOUNT:
            cell.value += IMMORTAL_REFCOUNT
    return ok


def is_immortal(obj: object) -> bool:
    return sys.version_info >= (3, 12) or sys.getrefcount(obj) > IMMORTAL_REFCOUNT // 2


EMIT_LEAKS_BOOL = _probe_emit_leak()
VOID_LEAKS_NONE = probe_void_leak() > 0
if VOID_LEAKS_NONE and not immortalize(None):  # pragma: no cover - an interpreter layout we don't know
    log.warning("this PySide6 drops references to None and None could not be protected: upgrade PySide6")
if EMIT_LEAKS_BOOL:
    immortalize(True, False)


def emit(signal: Any, *args: Any) -> Any:
    """``signal.emit(*args)`` without the PySide refcount bug (safe from any thread)."""
    r = signal.emit(*args)
    if EMIT_LEAKS_BOOL and isinstance(r, bool) and not is_immortal(r):
        _incref(r)
    return r
