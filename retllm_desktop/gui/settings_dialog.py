"""Preferences: library and models folders, threads, rerank defaults, result count, thumbnail size."""

from __future__ import annotations

import os

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .settings import VE_MODES, Settings

VE_LABELS = {
    "auto": "When unsure (recommended)",
    "off": "Never (faster)",
    "always": "Always (slowest)",
}


def _folder_row(parent: QWidget, edit: QLineEdit, title: str) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    b = QPushButton("Choose…", parent)
    b.setAccessibleName(f"Choose {title.lower()}")

    def pick() -> None:
        path = QFileDialog.getExistingDirectory(parent, title, edit.text() or os.path.expanduser("~"))
        if path:
            edit.setText(path)

    b.clicked.connect(pick)
    row.addWidget(b)
    return row


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, library_dir: str, models_dir: str, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.settings = settings
        form = QFormLayout(self)
        self.library = QLineEdit(settings.library or "", self)
        self.library.setPlaceholderText(library_dir)
        self.library.setAccessibleName("Library folder")
        self.models = QLineEdit(settings.models_dir or "", self)
        self.models.setPlaceholderText(models_dir)
        self.models.setAccessibleName("Models folder")
        for text, edit, title in (
            ("&Library folder:", self.library, "Library folder"),
            ("&Models folder:", self.models, "Models folder"),
        ):
            label = QLabel(text, self)  # a row of widgets gets no buddy (and shows the “&”) by itself
            label.setBuddy(edit)
            form.addRow(label, _folder_row(self, edit, title))
        self.clip = QLineEdit(settings.clip_model or "", self)
        self.clip.setPlaceholderText("first one found")
        self.clip.setAccessibleName("Search model name")
        form.addRow("&Search model:", self.clip)
        self.mllm = QLineEdit(settings.mllm_model or "", self)
        self.mllm.setPlaceholderText("first one found")
        self.mllm.setAccessibleName("Checking model name")
        form.addRow("C&hecking model:", self.mllm)
        self.threads = QSpinBox(self)
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("all cores")
        self.threads.setValue(settings.threads or 0)
        self.threads.setAccessibleName("CPU threads")
        form.addRow("CPU &threads:", self.threads)
        self.k = QSpinBox(self)
        self.k.setRange(1, 100)
        self.k.setValue(settings.rerank_k)
        self.k.setAccessibleName("Photos to double-check")
        form.addRow("&Double-check top:", self.k)
        self.ve = QComboBox(self)
        self.ve.setAccessibleName("Second look")
        for mode in VE_MODES:
            self.ve.addItem(VE_LABELS[mode], mode)
        self.ve.setCurrentIndex(max(0, self.ve.findData(settings.ve)))
        form.addRow("Second &look at the photo:", self.ve)
        self.cutoff = QDoubleSpinBox(self)
        self.cutoff.setRange(0.0, 1.0)
        self.cutoff.setSingleStep(0.05)
        self.cutoff.setValue(settings.min_match)
        self.cutoff.setAccessibleName("Match cutoff")
        self.cutoff.setToolTip(
            "“Only true matches” hides checked photos whose match probability is below this"
        )
        form.addRow("Match &cutoff:", self.cutoff)
        self.top = QSpinBox(self)
        self.top.setRange(10, 10_000)
        self.top.setSingleStep(100)
        self.top.setValue(settings.top)
        self.top.setAccessibleName("Results to show")
        form.addRow("&Results to show:", self.top)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.setMinimumWidth(560)  # room for folder paths

    def apply(self) -> bool:
        """Write the values into the settings; True when the library must be reopened."""
        s = self.settings
        before = (s.library, s.models_dir, s.clip_model, s.mllm_model, s.threads)
        s.library = self.library.text().strip() or None
        s.models_dir = self.models.text().strip() or None
        s.clip_model = self.clip.text().strip() or None
        s.mllm_model = self.mllm.text().strip() or None
        s.threads = self.threads.value() or None
        s.rerank_k = self.k.value()
        s.ve = self.ve.currentData()
        s.min_match = self.cutoff.value()
        s.top = self.top.value()
        s.sanitize()
        s.save()
        return before != (s.library, s.models_dir, s.clip_model, s.mllm_model, s.threads)
