"""Preferences: library and models folders, threads, rerank defaults, result count; advanced tuning knobs."""

from __future__ import annotations

import os

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .. import config
from .settings import VE_MODES, Settings

GIB = 1024**3


def search_model_choices(models_dir: str) -> list[tuple[str, str]]:
    """(folder name, label) of the installed search models; multilingual ones say so in words."""
    from ..models.clip.towers import ClipConfig, list_clip_models

    out = []
    for d in list_clip_models(models_dir):
        try:
            cfg = ClipConfig.load(d)
        except Exception:  # a broken folder is simply not offered
            continue
        label = d.name
        if cfg.extra.get("multilingual") or "multilingual" in d.name:
            label += " — any language"
        out.append((d.name, label))
    return out


DETAIL_LABELS = {
    "auto": "Automatic (recommended)",
    "quick": "Quick (lowest resolution)",
    "standard": "Standard (a few tiles)",
    "full": "Full (every tile, slowest)",
}

VE_LABELS = {
    "auto": "When unsure (recommended)",
    "off": "Never (faster)",
    "always": "Always (slowest)",
    "retrace": "Inside the model (paper's retracing)",
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
        self.clip = QComboBox(self)
        self.clip.setEditable(True)  # a model folder added by hand can still be named
        self.clip.setAccessibleName("Search model")
        self.clip.addItem("First one found", "")
        for name, label in search_model_choices(settings.models_dir or models_dir):
            self.clip.addItem(label, name)
        if settings.clip_model:
            i = self.clip.findData(settings.clip_model)
            if i < 0:
                self.clip.addItem(settings.clip_model, settings.clip_model)
                i = self.clip.count() - 1
            self.clip.setCurrentIndex(i)
        self.clip.setToolTip(
            "Which model finds the photos. A multilingual model understands queries in other languages. "
            "After a change, photos are prepared again in the background; search keeps working meanwhile."
        )
        form.addRow("&Search model:", self.clip)
        self.mllm = QLineEdit(settings.mllm_model or "", self)
        self.mllm.setPlaceholderText("first one found")
        self.mllm.setAccessibleName("Checking model name")
        form.addRow("C&hecking model:", self.mllm)
        self.threads = QSpinBox(self)
        self.threads.setRange(0, config.max_threads())
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
            "A checked photo is a match (✓ Likely match) when the model's share of “True” in its answer is "
            "above this; “Only true matches” shows only those"
        )
        form.addRow("Match &cutoff:", self.cutoff)
        self.top = QSpinBox(self)
        self.top.setRange(10, 10_000)
        self.top.setSingleStep(100)
        self.top.setValue(settings.top)
        self.top.setAccessibleName("Results to show")
        form.addRow("&Results to show:", self.top)
        self.read_text = QCheckBox("Find photos by the &words in them (reads text while indexing)", self)
        self.read_text.setChecked(settings.read_text)
        self.read_text.setToolTip(
            "Signs, receipts, documents, screenshots: their words are read on this computer and searchable"
        )
        form.addRow(self.read_text)
        self.read_faces = QCheckBox("Find &people in photos (finds faces while indexing)", self)
        self.read_faces.setChecked(settings.read_faces)
        self.read_faces.setToolTip(
            "Faces are found and grouped into people on this computer; name them in the People list"
        )
        form.addRow(self.read_faces)
        form.addRow(self._advanced(settings))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.setMinimumWidth(560)  # room for folder paths

    def _advanced(self, s: Settings) -> QGroupBox:
        """Tuning knobs: sizes of the caches, the LLM's context, when to take a second look."""
        box = QGroupBox("Advanced", self)
        form = QFormLayout(box)

        def spin(lo: int, hi: int, value: int, name: str, step: int = 1) -> QSpinBox:
            w = QSpinBox(box)
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setValue(value)
            w.setAccessibleName(name)
            return w

        def dspin(
            lo: float, hi: float, value: float, name: str, step: float, suffix: str = ""
        ) -> QDoubleSpinBox:
            w = QDoubleSpinBox(box)
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setValue(value)
            w.setSuffix(suffix)
            w.setAccessibleName(name)
            return w

        self.decoders = spin(0, 64, s.decode_workers or 0, "Photo decoders")
        self.decoders.setSpecialValueText("automatic")
        form.addRow("Photo &decoders while indexing:", self.decoders)
        self.emb_cache = dspin(0.0, 1024.0, s.mllm_cache_bytes / GIB, "Image embedding cache", 0.5, " GB")
        self.emb_cache.setToolTip("Disk space for the checking model's view of photos it has checked")
        form.addRow("Checked-photo &cache:", self.emb_cache)
        self.kv_cache = dspin(0.0, 1024.0, s.mllm_kv_cache_bytes / GIB, "LLM state cache", 0.5, " GB")
        self.kv_cache.setToolTip(
            "Disk space for the checking model's state after each photo (fast re-checks)"
        )
        form.addRow("Checking-model &state cache:", self.kv_cache)
        self._shown = (self.emb_cache.value(), self.kv_cache.value())
        self.n_ctx = spin(512, 131_072, s.n_ctx, "LLM context window", step=512)
        self.n_ctx.setSuffix(" tokens")
        form.addRow("Checking-model &context:", self.n_ctx)
        self.ve_threshold = dspin(0.0, 1.0, s.ve_threshold, "Second look threshold", 0.05)
        self.ve_threshold.setToolTip("“When unsure”: look again when the answer's entropy is above this")
        form.addRow("Second look when &unsure above:", self.ve_threshold)
        band = QHBoxLayout()
        self.band_low = dspin(0.0, 1.0, s.ve_band[0], "Uncertain band from", 0.05)
        self.band_high = dspin(0.0, 1.0, s.ve_band[1], "Uncertain band to", 0.05)
        band.addWidget(self.band_low)
        band.addWidget(QLabel("to", box))
        band.addWidget(self.band_high)
        form.addRow("… or when P(True) is between:", band)
        self.thumbs = spin(100, 100_000, s.thumb_memory_items, "Thumbnails in memory", step=500)
        form.addRow("&Thumbnails kept in memory:", self.thumbs)
        self.detail = QComboBox(box)
        self.detail.setAccessibleName("Photo detail for checks")
        for level, label in DETAIL_LABELS.items():
            self.detail.addItem(label, level)
        self.detail.setCurrentIndex(max(0, self.detail.findData(s.llm_detail)))
        self.detail.setToolTip(
            "How much of each photo the checking model looks at. Automatic picks what suits the "
            "installed model (Fast: the quickest look; Balanced and Best: the whole photo at the size "
            "they were made for). Quick sees the whole photo at low resolution (small details such as "
            "text or faces far away can be missed); Full sees it tile by tile, several times slower "
            "for a photo it has not seen before"
        )
        form.addRow("Photo detail for &checks:", self.detail)
        self.prepare = QCheckBox("&Prepare photos in the background for quick checks", box)
        self.prepare.setChecked(s.prepare)
        self.prepare.setToolTip(
            "While the app is idle, the checking model looks at your photos ahead of time (newest "
            "first), so double-checking them in a search is several times faster"
        )
        form.addRow(self.prepare)
        self.prepare_space = dspin(
            0.0, 1024.0, s.prepare_budget_bytes / GIB, "Space for prepared photos", 0.5, " GB"
        )
        form.addRow("Disk space for prepared &photos:", self.prepare_space)
        self.face_finder = QComboBox(box)
        self.face_finder.setAccessibleName("Face finding")
        self.face_finder.addItem("Fast (faces turned towards the camera)", "hog")
        self.face_finder.addItem("Thorough (also turned and smaller faces, about 5× slower)", "cnn")
        self.face_finder.setCurrentIndex(max(0, self.face_finder.findData(s.face_detector)))
        self.face_finder.setToolTip(
            "How photos are searched for faces. Applies to photos looked at from now on; photos already "
            "looked at keep the faces found in them"
        )
        form.addRow("&Face finding:", self.face_finder)
        self._shown_prepare = self.prepare_space.value()
        return box

    def _clip_choice(self) -> str | None:
        """The chosen model's folder name (typed text that is not an entry's label is taken as a name)."""
        text = self.clip.currentText().strip()
        i = self.clip.findText(text)
        data = self.clip.itemData(i) if i >= 0 else text
        return str(data).strip() or None

    def apply(self) -> bool:
        """Write the values into the settings; True when the library must be reopened."""
        s = self.settings

        def engine() -> tuple:
            return (
                s.library, s.models_dir, s.clip_model, s.mllm_model, s.threads,
                s.decode_workers, s.mllm_cache_bytes, s.mllm_kv_cache_bytes, s.n_ctx,
                s.llm_detail, s.prepare_budget_bytes, s.face_detector,
            )  # fmt: skip

        before = engine()
        s.library = self.library.text().strip() or None
        s.models_dir = self.models.text().strip() or None
        s.clip_model = self._clip_choice()
        s.mllm_model = self.mllm.text().strip() or None
        s.threads = self.threads.value() or None
        s.rerank_k = self.k.value()
        s.ve = self.ve.currentData()
        s.min_match = self.cutoff.value()
        s.top = self.top.value()
        s.read_text = self.read_text.isChecked()
        s.read_faces = self.read_faces.isChecked()
        s.decode_workers = self.decoders.value() or None
        if self.emb_cache.value() != self._shown[0]:  # untouched: keep the exact byte count
            s.mllm_cache_bytes = int(self.emb_cache.value() * GIB)
        if self.kv_cache.value() != self._shown[1]:
            s.mllm_kv_cache_bytes = int(self.kv_cache.value() * GIB)
        s.n_ctx = self.n_ctx.value()
        s.ve_threshold = self.ve_threshold.value()
        s.ve_band = (self.band_low.value(), self.band_high.value())
        s.thumb_memory_items = self.thumbs.value()
        s.llm_detail = self.detail.currentData()
        s.face_detector = self.face_finder.currentData()
        s.prepare = self.prepare.isChecked()
        if self.prepare_space.value() != self._shown_prepare:
            s.prepare_budget_bytes = int(self.prepare_space.value() * GIB)
        s.sanitize()
        s.save()
        return before != engine()
