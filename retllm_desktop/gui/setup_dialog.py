"""First run / missing models: what each model is for, its size, download with progress or use local files.

Downloads go through ``models.hub.download`` (the same code as ``retllm-desktop models download``) on a
worker; an entry without pinned checksums downloads only after the user said yes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

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
from ..models.hub.registry import ModelEntry, load_registry
from .qtcompat import emit
from .workers import CallWorker, WorkerPool

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


def registry_entries(paths: Sequence[Path] | None = None) -> tuple[list[ModelEntry], str | None]:
    """(entries, None) from the model registry, or ([], why not) when its files cannot be read."""
    try:
        return list(load_registry(paths)), None
    except RetllmError as e:
        return [], f"the model list could not be read: {e}"


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
            "<h3>Models</h3>RetLLM Desktop searches your photos with two local models; nothing leaves this "
            f"computer. Models live in <code>{self.models_dir}</code>.",
            self,
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        problems = [m for m in (clip_error, mllm_error) if m]
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
        entries, why_not = registry_entries(registry)
        self.entries = entries
        self.download_note = why_not
        installed = _installed_states(self.models_dir)
        for role in ("clip", "mllm"):
            body_lay.addWidget(self._role_box(role, entries, installed, body))
        body_lay.addStretch(1)
        if why_not:
            note = QLabel(
                f"Downloading from here is not possible: {why_not}. Put model folders into the models folder "
                "(see models/README.md), or choose a folder that already holds them.",
                self,
            )
            note.setWordWrap(True)
            lay.addWidget(note)

        row = QHBoxLayout()
        self.local_buttons: dict[str, QPushButton] = {}
        for text, tip, slot in (
            (
                "Use a models folder…",
                "Choose a folder that already holds clip/ and mllm/ model folders",
                self.choose_models_dir,
            ),
            (
                "Add a model folder…",
                "Copy one model's folder (with clip.json or mllm.json) into the models folder",
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
    def download(self, entry: ModelEntry, button: QPushButton, bar: QProgressBar) -> None:
        name = entry.name
        running = self._downloads.get(name)
        if running is not None and not running.done.is_set():
            running.cancel.set()
            button.setText("Download")
            return
        models_dir = self.models_dir
        unverified = not entry.pinned
        if unverified:  # the same explicit consent as the CLI's --allow-unverified
            answer = QMessageBox.question(
                self,
                "Unverified download",
                f"The model list pins no checksum for {name}: its files can only be taken on the "
                "download server's word, not checked against a known hash.\n\nDownload it anyway?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return

        def run(worker: CallWorker) -> Path:
            def progress(done: int, total: int) -> None:
                emit(worker.signals.progress, "download", int(done // 1024), int(max(total, 0) // 1024))

            return download.download_model(
                entry, Path(models_dir), progress=progress, cancel=worker.cancel, allow_unverified=unverified
            )

        w = CallWorker(run, pass_worker=True)
        self._downloads[name] = w
        bar.setVisible(True)
        bar.setRange(0, 0)
        button.setText("Cancel")
        button.setAccessibleName(f"Cancel download of {name}")

        def progress(_stage: str, done: int, total: int) -> None:
            if total > 0:
                bar.setRange(0, total)
                bar.setValue(min(done, total))
                bar.setFormat(f"{human_size(done * 1024)} / {human_size(total * 1024)}")

        def finished(result: Path | None) -> None:
            button.setText("Download")
            if w.cancel.is_set() or result is None:
                bar.setVisible(False)
                return
            bar.setRange(0, 1)
            bar.setValue(1)
            bar.setFormat("Downloaded")
            button.setEnabled(False)
            emit(self.models_changed, self.models_dir)

        def failed(msg: str) -> None:
            button.setText("Retry")
            bar.setVisible(False)
            QMessageBox.warning(self, "Download failed", f"{name}: {msg}")

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
                "That folder has neither clip.json nor mllm.json; see models/README.md.",
            )
            return
        dest = Path(self.models_dir) / role / s.name
        if dest.exists():
            QMessageBox.information(self, "Already there", f"{dest} already exists.")
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
