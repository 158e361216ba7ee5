"""First run / missing models: what each model is for, its size, download with progress or use local files.

Downloads go through ``models.hub.download`` (the same code as ``retllm-desktop models download``) on a
worker; an entry without pinned checksums downloads only after the user said yes.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ..errors import RetllmError
from ..models.hub import download
from ..models.hub.installed import installed_models
from ..models.hub.registry import ModelEntry, Registry, load_registry
from .qtcompat import emit
from .workers import CallWorker, WorkerPool

PRESET_TITLES = {"fast": "Fast", "balanced": "Balanced", "best": "Best", "multilingual": "Any language"}
DISK_MARGIN = 200_000_000  # bytes kept free beyond the download itself

ROLE_TEXT = {
    "clip": (
        "Search model (CLIP) — required",
        "Turns every photo and every query into a vector so the library can be searched in milliseconds.",
    ),
    "mllm": (
        "Checking model (multimodal LLM) — optional",
        "Looks at the top results one by one and asks “does this photo match?”, reordering them. "
        "Without it you still get results, just not double-checked.",
    ),
}


def human_size(n: float | None) -> str:
    if not n:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def read_registry(paths: Sequence[Path] | None = None) -> tuple[Registry | None, str | None]:
    """(registry, None), or (None, why not) when its files cannot be read."""
    try:
        return load_registry(paths), None
    except RetllmError as e:
        return None, f"the model list could not be read: {e}"


def _installed_states(models_dir: str) -> dict[tuple[str, str], str]:
    """(role, name) -> "installed" / "installed, unverified" (a download no registry pin vouches for)."""
    try:
        found = installed_models(models_dir)
    except OSError:
        return {}
    return {
        (m.role, m.name): "installed" + (", unverified" if m.verified is False else "")
        for m in found
        if m.complete
    }


class SetupDialog(QDialog):
    """Emits ``models_changed(models_dir)`` when a model was downloaded or a folder chosen."""

    models_changed = Signal(str)

    def __init__(
        self,
        models_dir: str,
        clip_error: str | None,
        mllm_error: str | None,
        parent=None,
        registry: Sequence[Path] | None = None,  # registry files (default: the ones in resources/)
    ) -> None:
        super().__init__(parent)
        self.setObjectName("setupDialog")
        self.setWindowTitle("Set up models")
        self.setAccessibleName("Set up models")
        self.models_dir = str(models_dir)
        self.pool = WorkerPool(2, self)  # downloads, folder copies
        self._downloads: dict[str, CallWorker] = {}

        lay = QVBoxLayout(self)
        intro = QLabel(
            "<h3>Models</h3>RetLLM Desktop searches your photos with two models that run on this computer; "
            "your photos never leave it. Choose a set to download — one click gets both models.",
            self,
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        # The engine's messages name commands and paths; the dialog says what they mean for the user.
        problems = []
        if clip_error:
            problems.append("There is no search model yet: choose a set below to start searching.")
        if mllm_error:
            problems.append(
                "There is no checking model: results are shown but not double-checked until one is installed."
            )
        self.problem = QLabel("<br>".join(f"• {p}" for p in problems) or "All models are present.", self)
        self.problem.setWordWrap(True)
        self.problem.setAccessibleName("What is missing")
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.problem)

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget(scroll)
        body_lay = QVBoxLayout(body)
        body_lay.setContentsMargins(0, 0, 0, 0)
        scroll.setWidget(body)
        lay.addWidget(scroll, 1)
        reg, why_not = read_registry(registry)
        self.registry = reg
        self.entries: list[ModelEntry] = list(reg) if reg is not None else []
        self.download_note = why_not
        self.preset_buttons: dict[str, QPushButton] = {}
        self.preset_labels: dict[str, QLabel] = {}
        if reg is not None and reg.presets:
            body_lay.addWidget(self._build_presets(body))
        self.advanced_toggle = QPushButton("Advanced: choose single models ▸", body)
        self.advanced_toggle.setFlat(True)
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setAccessibleName("Advanced")
        self.advanced = QWidget(body)
        adv_lay = QVBoxLayout(self.advanced)
        adv_lay.setContentsMargins(0, 0, 0, 0)
        self._build_single_models(self.advanced, adv_lay, self.entries)
        self.advanced.setVisible(not self.preset_buttons)  # no presets: the single models are the choice
        self.advanced_toggle.setVisible(bool(self.preset_buttons))
        self.advanced_toggle.toggled.connect(self._show_advanced)
        body_lay.addWidget(self.advanced_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        body_lay.addWidget(self.advanced)
        body_lay.addStretch(1)
        if why_not:
            note = QLabel(
                f"Downloading from here is not possible: {why_not}. If you have the model files, use "
                "“Use a models folder…” or “Add a model folder…”.",
                self,
            )
            note.setWordWrap(True)
            lay.addWidget(note)

        row = QHBoxLayout()
        self.local_buttons: dict[str, QPushButton] = {}
        for text, tip, slot in (
            (
                "Use a models folder…",
                "Choose a folder that already holds downloaded models",
                self.choose_models_dir,
            ),
            (
                "Add a model folder…",
                "Copy the folder of one model you already have into the models folder",
                self.add_model_folder,
            ),
            ("Open models folder", "Show the models folder in the file manager", self.open_models_dir),
        ):
            b = QPushButton(text, self)
            b.setToolTip(tip)
            b.setAccessibleName(text.rstrip("…"))
            b.clicked.connect(slot)
            row.addWidget(b)
            self.local_buttons[text] = b
        lay.addLayout(row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(760, 680)

    # -- presets ------------------------------------------------------------------------------------
    def _installed(self, entry: ModelEntry) -> bool:
        folder = Path(self.models_dir) / str(entry.role) / str(entry.name)
        return (folder / f"{entry.role}.json").is_file()

    def free_bytes(self) -> int:
        """Free space where the models go (the nearest existing folder of the models folder)."""
        p = Path(self.models_dir)
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            return int(shutil.disk_usage(p).free)
        except OSError:
            return -1

    def preset_facts(self, name: str) -> dict[str, Any]:
        """What the user needs to choose a preset: members, total and still-to-download size, licences,
        whether it fits on the disk."""
        reg = self.registry
        preset = reg.preset(name)
        members = reg.preset_models(name)
        total = sum(int(m.approx_bytes or 0) for m in members)
        missing = [m for m in members if not self._installed(m)]
        need = sum(int(m.approx_bytes or 0) for m in missing)
        free = self.free_bytes()
        return {
            "preset": preset,
            "members": members,
            "missing": missing,
            "total": total,
            "need": need,
            "free": free,
            "fits": free < 0 or free >= need + DISK_MARGIN,
            "non_commercial": [m for m in members if "non-commercial" in str(m.licence or "").lower()],
        }

    def _preset_text(self, name: str, facts: dict[str, Any]) -> str:
        title = PRESET_TITLES.get(name, name.capitalize())
        if name == getattr(self.registry, "default_preset", None):
            title += " (the default: smallest download)"
        desc = re.sub(r"\s*\(~?[\d.]+\s*[GM]B\)\s*$", "", facts["preset"].description or "")
        licences = sorted({m.licence or "licence unknown" for m in facts["members"]})
        lines = [
            f"<b>{title}</b> — {human_size(facts['total'])} in all",
            desc,
            "Licences: " + ", ".join(licences),
        ]
        for m in facts["non_commercial"]:
            licence = re.sub(r"\s*\(non-commercial\)", "", m.licence or "")
            lines.append(
                f"<b>Non-commercial use only:</b> {m.name} is under the {licence}, "
                "which does not allow commercial use."
            )
        if not facts["missing"]:
            lines.append("Installed.")
        elif not facts["fits"]:
            lines.append(
                f"<b>Not enough free disk space:</b> needs {human_size(facts['need'])}, "
                f"{human_size(facts['free'])} free."
            )
        else:
            lines.append(
                f"Needs {human_size(facts['need'])} of disk space; {human_size(facts['free'])} free."
            )
        return "<br>".join(x for x in lines if x)

    def _build_presets(self, parent: QWidget) -> QGroupBox:
        box = QGroupBox("Choose a set of models", parent)
        grid = QGridLayout(box)
        grid.setColumnStretch(0, 1)
        for row, name in enumerate(getattr(self.registry, "presets", {}) or {}):
            facts = self.preset_facts(name)
            info = QLabel(self._preset_text(name, facts), box)
            info.setWordWrap(True)
            bar = QProgressBar(box)
            bar.setFixedWidth(180)
            bar.setVisible(False)
            title = PRESET_TITLES.get(name, name.capitalize())
            bar.setAccessibleName(f"Download progress of the {title} set")
            btn = QPushButton("Download", box)
            btn.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            btn.setAccessibleName(f"Download the {title} set")
            btn.setEnabled(bool(facts["missing"]) and facts["fits"])
            if not facts["missing"]:
                btn.setText("Installed")
            btn.clicked.connect(lambda _=False, n=name, b=btn, pb=bar: self.download_preset(n, b, pb))
            grid.addWidget(info, row, 0)
            grid.addWidget(bar, row, 1)
            grid.addWidget(btn, row, 2)
            self.preset_buttons[name] = btn
            self.preset_labels[name] = info
        return box

    def _show_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_toggle.setText(f"Advanced: choose single models {'▾' if on else '▸'}")

    def _build_single_models(self, body: QWidget, body_lay: QVBoxLayout, entries: list[ModelEntry]) -> None:
        installed = _installed_states(self.models_dir)
        for role in ("clip", "mllm"):
            body_lay.addWidget(self._role_box(role, entries, installed, body))

    def _role_box(
        self, role: str, entries: list[ModelEntry], installed: dict[tuple[str, str], str], parent: QWidget
    ) -> QGroupBox:
        """What a role is for, then one row per registry model: name, size, licence, Download + progress."""
        title, text = ROLE_TEXT[role]
        box = QGroupBox(title, parent)
        grid = QGridLayout(box)
        grid.setColumnStretch(0, 1)  # the description takes the width, not the buttons
        desc = QLabel(text, box)
        desc.setWordWrap(True)
        grid.addWidget(desc, 0, 0, 1, 3)
        row = 1
        for entry in entries:
            if entry.role != role:
                continue
            name = entry.name
            details = " · ".join(
                x
                for x in (
                    human_size(entry.approx_bytes),
                    entry.licence or "",
                    "" if entry.pinned else "unverified: no pinned checksum",
                    installed.get((role, name), ""),
                )
                if x and x != "?"
            )
            info = QLabel(f"<b>{name}</b> ({details})<br>{entry.description}", box)
            info.setWordWrap(True)
            bar = QProgressBar(box)
            bar.setAccessibleName(f"Download progress of {name}")
            bar.setVisible(False)
            btn = QPushButton("Download", box)
            btn.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            bar.setFixedWidth(180)
            btn.setAccessibleName(f"Download {name}")
            btn.clicked.connect(lambda _=False, e=entry, b=btn, pb=bar: self.download(e, b, pb))
            grid.addWidget(info, row, 0)
            grid.addWidget(bar, row, 1)
            grid.addWidget(btn, row, 2)
            row += 1
        return box

    # -- actions -------------------------------------------------------------------------------------
    def _consent_unverified(self, names: list[str]) -> bool:
        """The same explicit consent as the command line's --allow-unverified."""
        answer = QMessageBox.question(
            self,
            "Unverified download",
            f"The model list pins no checksum for {', '.join(names)}: its files can only be taken on the "
            "download server's word, not checked against a known hash.\n\nDownload it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def download(self, entry: ModelEntry, button: QPushButton, bar: QProgressBar) -> None:
        name = entry.name
        if self._cancel_running(name, button):
            return
        models_dir = self.models_dir
        unverified = not entry.pinned
        if unverified and not self._consent_unverified([name]):
            return

        def run(worker: CallWorker) -> Path:
            def progress(done: int, total: int) -> None:
                emit(worker.signals.progress, "download", int(done // 1024), int(max(total, 0) // 1024))

            return download.download_model(
                entry, Path(models_dir), progress=progress, cancel=worker.cancel, allow_unverified=unverified
            )

        self._start_download(name, name, run, button, bar)

    def download_preset(self, preset: str, button: QPushButton, bar: QProgressBar) -> None:
        """Both models of a set, one after the other, with one progress bar over the whole download."""
        key = f"preset:{preset}"
        if self._cancel_running(key, button):
            return
        facts = self.preset_facts(preset)
        entries: list[ModelEntry] = facts["missing"]
        if not entries:
            return
        if not facts["fits"]:
            QMessageBox.warning(
                self,
                "Not enough disk space",
                f"This set needs {human_size(facts['need'])}; {human_size(facts['free'])} are free.",
            )
            return
        unverified = [e.name for e in entries if not e.pinned]
        if unverified and not self._consent_unverified(unverified):
            return
        models_dir, total = self.models_dir, max(int(facts["need"]), 1)

        def run(worker: CallWorker) -> str:
            base = 0
            for e in entries:

                def progress(done: int, _total: int, base: int = base) -> None:
                    emit(
                        worker.signals.progress,
                        "download",
                        (base + done) // 1024,
                        max(total, base + done) // 1024,
                    )

                download.download_model(
                    e,
                    Path(models_dir),
                    progress=progress,
                    cancel=worker.cancel,
                    allow_unverified=not e.pinned,
                )
                base += int(e.approx_bytes or 0)
            return models_dir

        title = PRESET_TITLES.get(preset, preset.capitalize())
        self._start_download(key, f"The {title} set", run, button, bar)

    def _cancel_running(self, key: str, button: QPushButton) -> bool:
        running = self._downloads.get(key)
        if running is not None and not running.done.is_set():
            running.cancel.set()
            button.setText("Download")
            return True
        return False

    def _start_download(self, key: str, what: str, run: Any, button: QPushButton, bar: QProgressBar) -> None:
        w = CallWorker(run, pass_worker=True)
        self._downloads[key] = w
        bar.setVisible(True)
        bar.setRange(0, 0)
        button.setText("Cancel")
        button.setAccessibleName(f"Cancel download of {what}")

        def progress(_stage: str, done: int, total: int) -> None:
            if total > 0:
                bar.setRange(0, total)
                bar.setValue(min(done, total))
                bar.setFormat(f"{human_size(done * 1024)} / {human_size(total * 1024)}")

        def finished(result: Any) -> None:
            button.setText("Download")
            if w.cancel.is_set() or result is None:
                bar.setVisible(False)
                return
            bar.setRange(0, 1)
            bar.setValue(1)
            bar.setFormat("Downloaded")
            button.setText("Installed")
            button.setEnabled(False)
            emit(self.models_changed, self.models_dir)

        def failed(msg: str) -> None:
            button.setText("Retry")
            bar.setVisible(False)
            QMessageBox.warning(self, "Download failed", f"{what}: {msg}")

        w.signals.progress.connect(progress)
        w.signals.finished.connect(finished)
        w.signals.failed.connect(failed)
        self.pool.start(w)

    def choose_models_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a models folder", self.models_dir)
        if path:
            self.models_dir = path
            emit(self.models_changed, path)

    def add_model_folder(self) -> None:
        src = QFileDialog.getExistingDirectory(self, "Choose a model's folder", os.path.expanduser("~"))
        if not src:
            return
        s = Path(src)
        role = "clip" if (s / "clip.json").is_file() else "mllm" if (s / "mllm.json").is_file() else None
        if role is None:
            QMessageBox.warning(
                self,
                "Not a model folder",
                "That folder does not hold a model this app can use (its description file is missing).",
            )
            return
        dest = Path(self.models_dir) / role / s.name
        if dest.exists():
            QMessageBox.information(
                self, "Already there", f"The model {s.name} is already in the models folder."
            )
            emit(self.models_changed, self.models_dir)
            return
        # Off the UI thread: a model folder can be gigabytes (multi-GB LLMs: prefer "Use a models folder").
        btn = self.local_buttons["Add a model folder…"]
        btn.setEnabled(False)
        btn.setText(f"Copying {s.name}…")
        models_dir = self.models_dir

        def copy() -> str:
            try:
                shutil.copytree(s, dest)
            except OSError as e:
                shutil.rmtree(dest, ignore_errors=True)  # no half-copied model left behind
                raise RetllmError(str(e)) from e
            return models_dir

        def finish(error: str | None) -> None:
            if not isValid(self):
                return
            btn.setEnabled(True)
            btn.setText("Add a model folder…")
            if error is not None:
                QMessageBox.warning(self, "Copy failed", error)
            else:
                emit(self.models_changed, models_dir)

        w = CallWorker(copy)
        w.signals.finished.connect(lambda _r: finish(None))
        w.signals.failed.connect(finish)
        self._copy_worker = w
        self.pool.start(w)

    def open_models_dir(self) -> None:
        Path(self.models_dir).mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.models_dir))

    def done(self, code: int) -> None:
        self.pool.cancel_all()
        super().done(code)

    def closeEvent(self, event) -> None:
        self.pool.cancel_all()
        self.pool.wait(5000)
        super().closeEvent(event)
