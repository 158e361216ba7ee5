"""The check before Qt starts: missing platform libraries or no display give one line with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retllm_desktop.gui import preflight

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /x/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibsomething-new.so.2 => not found
"""


def fake_ldd(tmp_path: Path, output: str) -> Path:
    """An ``ldd`` on PATH that prints ``output`` for the plugin named ``libqxcb.so`` and nothing missing else."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "ldd"
    (tmp_path / "ldd_out.txt").write_text(output)
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in *libqxcb.so) cat "{tmp_path / "ldd_out.txt"}" ;; '
        "*) echo '\tlibc.so.6 => /lib/libc.so.6 (0x1)' ;; esac\n"
    )
    script.chmod(0o755)
    return bindir


def fake_path(tmp_path: Path, output: str) -> str:
    return f"{fake_ldd(tmp_path, output)}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    d = tmp_path / "platforms"
    d.mkdir()
    for name in ("xcb", "wayland", "offscreen"):
        (d / f"libq{name}.so").write_bytes(b"\x7fELF")
    return d


def test_parse_ldd_lists_each_missing_library_once() -> None:
    assert preflight.parse_ldd(LDD_MISSING) == [
        "libxcb-cursor.so.0",
        "libxcb-icccm.so.4",
        "libsomething-new.so.2",
    ]
    assert preflight.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_install_hint_names_debian_and_fedora_packages() -> None:
    hint = preflight.install_hint(
        ["libxcb-cursor.so.0", "libxcb-randr.so.0", "libxcb-shape.so.0", "libfoo.so.1"]
    )
    assert hint == (
        "sudo apt install libxcb-cursor0 libxcb-randr0 libxcb-shape0 libfoo.so.1 (Debian/Ubuntu) "
        "or sudo dnf install xcb-util-cursor libxcb libfoo.so.1 (Fedora)"
    )


def test_missing_x11_libraries_give_one_line_with_the_install_command(
    tmp_path: Path, plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_path(tmp_path, LDD_MISSING))
    msg = preflight.check({"DISPLAY": ":0"}, plugins, platform="linux")
    assert msg is not None and "\n" not in msg
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libsomething-new.so.2" in msg
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libsomething-new.so.2 (Debian/Ubuntu)" in msg
    assert "sudo dnf install xcb-util-cursor xcb-util-wm libsomething-new.so.2 (Fedora)" in msg


def test_complete_plugin_or_other_platforms_pass(
    tmp_path: Path, plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_path(tmp_path, "\tlibxcb.so.1 => /lib/libxcb.so.1 (0x1)\n"))
    assert preflight.check({"DISPLAY": ":0"}, plugins, platform="linux") is None
    for system in ("darwin", "win32"):
        assert preflight.check({}, plugins, platform=system) is None


def test_wayland_session_does_not_need_the_x11_libraries(
    tmp_path: Path, plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_path(tmp_path, LDD_MISSING))  # only libqxcb.so lacks libraries
    env = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    assert preflight.candidate_platforms(env) == ["wayland", "xcb"]
    assert preflight.check(env, plugins, platform="linux") is None
    # ... but forcing X11 on that session does
    forced = preflight.check({**env, "QT_QPA_PLATFORM": "xcb"}, plugins, platform="linux")
    assert forced is not None and "X11" in forced and "apt install" in forced


def test_no_display_and_explicit_platforms(
    tmp_path: Path, plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_path(tmp_path, LDD_MISSING))
    msg = preflight.check({}, plugins, platform="linux")
    assert msg is not None and "no display" in msg and "apt" not in msg
    assert preflight.check({"QT_QPA_PLATFORM": "offscreen"}, plugins, platform="linux") is None
    assert preflight.candidate_platforms({"QT_QPA_PLATFORM": "vnc:size=800x600;xcb"}) == ["vnc", "xcb"]
    # a platform plugin we do not ship (custom Qt): Qt decides
    assert preflight.check({"QT_QPA_PLATFORM": "eglfs-custom"}, plugins, platform="linux") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF plugins")
def test_real_xcb_plugin_verdict_matches_the_dynamic_loader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ldd's verdict on the real X11 plugin agrees with actually loading it (in a child process)."""
    plugin_dir = preflight.qt_plugin_dir()
    assert plugin_dir is not None
    plugin = plugin_dir / "libqxcb.so"
    assert plugin.exists()
    missing = preflight.missing_libraries(plugin)
    r = subprocess.run(
        [sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(plugin)!r})"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if missing:
        assert r.returncode != 0 and any(lib in r.stderr for lib in missing)
        # without ldd, loading the plugin names one of the same libraries
        monkeypatch.setenv("PATH", str(tmp_path))
        assert preflight.missing_libraries(plugin)[0] in missing
    else:
        assert r.returncode == 0, r.stderr


def test_app_with_missing_libraries_exits_1_with_the_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DISPLAY"] = ":99"
    env["PATH"] = fake_path(tmp_path, LDD_MISSING)
    r = subprocess.run(
        [sys.executable, "main.py", "--library", str(tmp_path / "lib")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "sudo apt install libxcb-cursor0" in lines[0] and "(Fedora)" in lines[0]
