"""Can Qt open a window here? Checked *before* the QApplication exists, without importing Qt.

Qt's own failure on a desktop that lacks a system library of its platform plugin (typically the X11
plugin's ``libxcb-cursor0``, ``libxcb-icccm4``, … on a fresh Debian/Ubuntu) is an abort with a long,
technical message. Here the plugin Qt is going to load is checked with ``ldd`` first, so the user gets one
line with the command that installs what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package) for the libraries Qt's Linux platform plugins need.
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl"),
}

# Which display each platform plugin needs; plugins not listed (offscreen, vnc, …) need none.
_DISPLAY_VARS = {"xcb": ("DISPLAY",), "wayland": ("WAYLAND_DISPLAY",)}
_PLATFORM_NAMES = {"xcb": "X11", "wayland": "Wayland"}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")
_DLOPEN_ERROR = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def qt_plugin_dir() -> Path | None:
    """PySide6's ``Qt/plugins/platforms`` folder (or ``$QT_QPA_PLATFORM_PLUGIN_PATH``), found without importing Qt."""
    override = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms"


def parse_ldd(output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``=> not found``, each once, in order."""
    missing: list[str] = []
    for line in output.splitlines():
        m = _NOT_FOUND.match(line)
        if m and m.group(1) not in missing:
            missing.append(m.group(1))
    return missing


def missing_libraries(plugin: Path) -> list[str]:
    """System libraries the plugin (or a Qt library it loads) needs but the dynamic loader cannot find."""
    ldd = shutil.which("ldd")
    if ldd:
        try:
            r = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return []  # cannot tell: let Qt try
        return parse_ldd(r.stdout + "\n" + r.stderr)
    return _missing_by_loading(plugin)


def _missing_by_loading(plugin: Path) -> list[str]:
    """Without ldd (e.g. a minimal image), loading the plugin names the first missing library."""
    import ctypes

    try:
        ctypes.CDLL(str(plugin))
    except OSError as e:
        m = _DLOPEN_ERROR.search(str(e))
        return [m.group(1)] if m else []
    return []


def install_hint(missing: list[str]) -> str:
    """``sudo apt install … (Debian/Ubuntu) or sudo dnf install … (Fedora)`` for the missing sonames."""
    deb: list[str] = []
    rpm: list[str] = []
    for lib in missing:
        d, f = PACKAGES.get(lib, (lib, lib))
        deb += [d] if d not in deb else []
        rpm += [f] if f not in rpm else []
    return f"sudo apt install {' '.join(deb)} (Debian/Ubuntu) or sudo dnf install {' '.join(rpm)} (Fedora)"


def candidate_platforms(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order: ``$QT_QPA_PLATFORM`` or Qt's own Linux default."""
    explicit = env.get("QT_QPA_PLATFORM", "").strip()
    if explicit:
        return [p.split(":", 1)[0].strip() for p in explicit.split(";") if p.strip()]
    return ["wayland", "xcb"] if env.get("WAYLAND_DISPLAY") else ["xcb"]


def check(
    env: Mapping[str, str] | None = None,
    plugin_dir: Path | None = None,
    platform: str | None = None,
) -> str | None:
    """None when Qt can open a window, else the one line that tells the user what to do."""
    env = os.environ if env is None else env
    if (platform or sys.platform).startswith(("win", "darwin")):
        return None
    plugin_dir = plugin_dir if plugin_dir is not None else qt_plugin_dir()
    problems: list[str] = []
    for name in candidate_platforms(env):
        display_vars = _DISPLAY_VARS.get(name, ())
        if display_vars and not any(env.get(v) for v in display_vars):
            continue
        plugin = plugin_dir / f"libq{name}.so" if plugin_dir else None
        if plugin is None or not plugin.exists():
            return None  # not ours to judge (a custom Qt build or plugin path): let Qt decide
        missing = missing_libraries(plugin)
        if not missing:
            return None
        problems.append(
            f"the {_PLATFORM_NAMES.get(name, name)} display needs system libraries that are missing "
            f"({', '.join(missing)}); install them with: {install_hint(missing)}"
        )
    if problems:
        return f"retllm-desktop: cannot open the app: {problems[0]}"
    return (
        "retllm-desktop: no display to open the app on (DISPLAY/WAYLAND_DISPLAY unset; start it from a "
        "desktop session); the command line works without one: retllm-desktop --help"
    )
