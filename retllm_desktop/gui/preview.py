"""The large preview of one result: image, details and scores, actions, arrow keys through results."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QFontMetrics,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
    QPolygonF,
    QShortcut,
)
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ..errors import RetllmError
from ..verdict import verdict
from .qtcompat import emit
from .results_model import describe_date
from .workers import CallWorker, ExplainWorker, WorkerPool

if TYPE_CHECKING:
    from ..catalog import Photo
    from ..library import Library
    from ..search import Query, SearchResult

SIDE_WIDTH = 330  # px, the details panel next to the photo


def show_in_folder(path: str) -> None:
    """Reveal ``path`` in the platform's file manager (selecting it where the platform allows)."""
    try:
        if sys.platform == "darwin":
            subprocess.Popen(["open", "-R", path])
            return
        if sys.platform.startswith("win"):
            subprocess.Popen(["explorer", "/select,", os.path.normpath(path)])
            return
    except OSError:
        pass
    QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path)))


def wrap_anywhere(text: str, fm: QFontMetrics, width: int) -> str:
    """Break ``text`` into lines no wider than ``width`` px (QLabel only wraps at spaces).

    Breaks after a path separator, ``_`` or ``-`` when one is on the line, else mid-word: long file
    names and paths stay inside a narrow panel.
    """
    if width <= 0 or fm.horizontalAdvance(text) <= width:
        return text
    lines: list[str] = []
    rest = text
    while rest and fm.horizontalAdvance(rest) > width:
        n = 1
        while n < len(rest) and fm.horizontalAdvance(rest[: n + 1]) <= width:
            n += 1
        cut = max(rest.rfind(c, 0, n) for c in (os.sep, "/", "_", "-", " ")) + 1
        if cut < n // 2:  # no good break point on this line
            cut = n
        lines.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        lines.append(rest)
    return "\n".join(lines)


class ImageView(QWidget):
    """Paints a pixmap aspect-fit and centred; says "Loading…" until one is set."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._pm: QPixmap | None = None
        self._message = "Loading…"
        self._highlights: list[list[list[float]]] = []  # quads, fractions of the photo's width/height
        self._faces: list[tuple[tuple[float, float, float, float], str]] = []  # (box fractions, name or "")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAccessibleName("Photo")

    def set_pixmap(self, pm: QPixmap | None, message: str = "") -> None:
        self._pm, self._message = pm, message
        self.update()

    def has_image(self) -> bool:
        return self._pm is not None and not self._pm.isNull()

    def set_highlights(self, boxes: list[list[list[float]]]) -> None:
        """Outline these boxes (the query's words found in the photo) over the image."""
        self._highlights = [b for b in boxes if len(b) == 4]
        self.update()

    def highlights(self) -> list[list[list[float]]]:
        return list(self._highlights)

    def set_faces(self, faces: list[tuple[tuple[float, float, float, float], str]]) -> None:
        """Outline the faces found in the photo, each with its person's name (empty: not named)."""
        self._faces = list(faces)
        self.update()

    def faces(self) -> list[tuple[tuple[float, float, float, float], str]]:
        return list(self._faces)

    def sizeHint(self) -> QSize:
        return QSize(900, 640)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().color(QPalette.ColorRole.Base).darker(115))
        if self.has_image():
            pm = self._pm
            dpr = pm.devicePixelRatio() or 1.0
            w, h = pm.width() / dpr, pm.height() / dpr
            scale = min(self.width() / w, self.height() / h, 4.0)
            tw, th = w * scale, h * scale
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            x0, y0 = (self.width() - tw) / 2, (self.height() - th) / 2
            p.drawPixmap(QRectF(x0, y0, tw, th), pm, QRectF(pm.rect()))
            if self._highlights:
                self._paint_highlights(p, x0, y0, tw, th)
            if self._faces:
                self._paint_faces(p, x0, y0, tw, th)
        else:
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
        p.end()

    def _paint_faces(self, p: QPainter, x0: float, y0: float, w: float, h: float) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = p.fontMetrics()
        for (fx0, fy0, fx1, fy1), name in self._faces:
            rect = QRectF(x0 + fx0 * w, y0 + fy0 * h, (fx1 - fx0) * w, (fy1 - fy0) * h)
            pen = QPen(QColor(255, 255, 255) if name else QColor(200, 200, 200, 180))
            pen.setWidthF(2.0)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(rect, 4, 4)
            if name:
                tw = fm.horizontalAdvance(name) + 10
                label = QRectF(rect.center().x() - tw / 2, rect.bottom() + 3, tw, fm.height() + 4)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(0, 0, 0, 170))
                p.drawRoundedRect(label, 4, 4)
                p.setPen(QColor(255, 255, 255))
                p.drawText(label, Qt.AlignmentFlag.AlignCenter, name)

    def _paint_highlights(self, p: QPainter, x0: float, y0: float, w: float, h: float) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(255, 200, 0))
        pen.setWidthF(2.5)
        p.setPen(pen)
        p.setBrush(QColor(255, 200, 0, 60))
        pad = 3.0
        for quad in self._highlights:
            pts = [QPointF(x0 + fx * w, y0 + fy * h) for fx, fy in quad]
            cx = sum(pt.x() for pt in pts) / 4
            cy = sum(pt.y() for pt in pts) / 4
            grown = [  # a little larger than the letters, so the outline does not cover them
                QPointF(pt.x() + pad * (1 if pt.x() > cx else -1), pt.y() + pad * (1 if pt.y() > cy else -1))
                for pt in pts
            ]
            p.drawPolygon(QPolygonF(grown))


def format_coordinates(lat: float, lon: float) -> str:
    """38.7107° N, 9.1365° W — how maps write a position."""
    return f"{abs(lat):.4f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.4f}° {'E' if lon >= 0 else 'W'}"


class PreviewDialog(QDialog):
    """``get_result(row)`` supplies results so arrows walk the grid; ``row_changed`` reports the move."""

    row_changed = Signal(int)
    find_similar = Signal(str)

    def __init__(
        self,
        parent: QWidget | None,
        get_result: Callable[[int], SearchResult | None],
        count: Callable[[], int],
        row: int,
        library: Library,
        query: Query | None,
        pool: WorkerPool,
        llm_pool: WorkerPool | None = None,
    ) -> None:
        # Builds the dialog's widgets top to bottom (image, fields, buttons): long, but one widget per block.
        super().__init__(parent)
        self.setObjectName("preview")
        self.setWindowTitle("Preview")
        self.setAccessibleName("Photo preview")
        self.get_result, self.count, self.library, self.query = get_result, count, library, query
        self.pool, self.llm_pool = pool, llm_pool or pool
        self.cutoff: float | None = getattr(getattr(get_result, "__self__", None), "cutoff", None)
        self.row = -1
        self.shown_id: int | None = None  # the photo shown (the window closes the preview when it goes)
        self._image_worker: CallWorker | None = None
        self._explain_worker: ExplainWorker | None = None

        self.image = ImageView(self)
        self.title = QLabel(self)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        f = self.title.font()
        f.setPointSizeF(f.pointSizeF() * 1.2)
        f.setBold(True)
        self.title.setFont(f)
        self.info = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for name in (
            "Path",
            "Copies",
            "Similar",
            "Taken",
            "Place",
            "Camera",
            "Size",
            "Match",
            "Second look",
            "Rank",
            "Words",
            "Scores",
        ):
            lab = QLabel(self)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            lab.setAccessibleName(name)
            self.fields[name] = lab
            self.info.addRow(f"{name}:", lab)
        # A burst's similar shots: the link shows them in the grid right after this one (arrows reach them).
        self._group_model = getattr(get_result, "__self__", None)  # the grid's model, when it has groups
        similar = self.fields["Similar"]
        similar.setTextFormat(Qt.TextFormat.RichText)
        similar.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        similar.linkActivated.connect(self._toggle_group)
        # The raw numbers (P(True), entropy, similarity) only when asked for: the verdict says it in words.
        self.details_btn = QPushButton("Show scores", self)
        self.details_btn.setCheckable(True)
        self.details_btn.setFlat(True)
        self.details_btn.setAccessibleName("Show scores")
        self.details_btn.setToolTip("Show the numbers behind the verdict")
        self.details_btn.setAutoDefault(False)
        self.details_btn.toggled.connect(self._details_toggled)
        self.info.addRow("", self.details_btn)
        self.info.setRowVisible(self.fields["Scores"], False)
        self.why = QLabel(self)
        self.why.setWordWrap(True)
        self.why.setAccessibleName("Why this photo")
        self.why.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        def button(text: str, tip: str, slot) -> QPushButton:
            b = QPushButton(text, self)
            b.setToolTip(tip)
            b.setAccessibleName(text.replace("&", ""))
            b.setAutoDefault(False)
            b.clicked.connect(slot)
            return b

        self.open_btn = button("&Open", "Open in the default image viewer", self.open_photo)
        self.folder_btn = button("Show in &folder", "Show the file in the file manager", self.reveal)
        self.copy_btn = button("&Copy path", "Copy the file's path to the clipboard", self.copy_path)
        self.why_btn = button("&Why this photo?", "Ask the model for a one-line explanation", self.explain)
        self.similar_btn = button("Find &similar", "Search for photos like this one", self._find_similar)
        self.prev_btn = button("◀", "Previous result (Left arrow)", lambda: self.step(-1))
        self.next_btn = button("▶", "Next result (Right arrow)", lambda: self.step(1))
        self.prev_btn.setAccessibleName("Previous result")
        self.next_btn.setAccessibleName("Next result")
        close = button("Close", "Close the preview (Esc)", self.close)

        side = QVBoxLayout()
        side.addWidget(self.title)
        side.addLayout(self.info)
        side.addWidget(self.why)
        side.addStretch(1)
        for b in (self.open_btn, self.folder_btn, self.copy_btn, self.why_btn, self.similar_btn):
            side.addWidget(b)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_btn)
        nav.addWidget(self.next_btn)
        nav.addStretch(1)
        nav.addWidget(close)
        side.addLayout(nav)
        sidew = QWidget(self)
        sidew.setLayout(side)
        sidew.setFixedWidth(SIDE_WIDTH)
        lay = QHBoxLayout(self)
        lay.addWidget(self.image, 1)
        lay.addWidget(sidew)

        for key, delta in (
            (Qt.Key.Key_Left, -1),
            (Qt.Key.Key_Right, 1),
            (Qt.Key.Key_Up, -1),
            (Qt.Key.Key_Down, 1),
        ):
            sc = QShortcut(QKeySequence(key), self)
            sc.activated.connect(lambda d=delta: self.step(d))
        QShortcut(QKeySequence(Qt.Key.Key_Space), self).activated.connect(self.close)
        QShortcut(QKeySequence.StandardKey.Copy, self).activated.connect(self.copy_path)
        self.resize(1200, 760)
        self.show_row(row)

    # -- content -----------------------------------------------------------------------------------
    def _field_width(self) -> int:
        """Width of the value column of the details form (the side panel has a fixed width)."""
        fm = self.fields["Path"].fontMetrics()
        label_w = max(fm.horizontalAdvance(f"{n}:") for n in self.fields)
        spacing = max(self.info.horizontalSpacing(), 6)
        return SIDE_WIDTH - label_w - spacing - 30

    def _show_place(self, p: Photo) -> None:
        """The place's name when the GPS names one; the coordinates only on hover (and when no name)."""
        field = self.fields["Place"]
        if p.gps_lat is None or p.gps_lon is None:
            field.setText("unknown")
            field.setToolTip("")
            return
        coords = format_coordinates(p.gps_lat, p.gps_lon)
        name = None
        place_name = getattr(self.library, "place_name", None)
        if place_name is not None:
            try:
                name = place_name(p.id)
            except (sqlite3.Error, RetllmError):  # the library closed under the dialog: coordinates
                name = None
        field.setText(name or coords)
        field.setToolTip(f"GPS {coords}" if name else "")

    @property
    def result(self) -> SearchResult | None:
        return self.get_result(self.row)

    def show_row(self, row: int) -> None:
        r = self.get_result(row)
        if r is None:
            return
        self.row = row
        p = r.photo
        self.shown_id = p.id
        name = os.path.basename(p.path)
        self.setWindowTitle(f"{name} — Preview")
        self.title.setText(wrap_anywhere(name, self.title.fontMetrics(), SIDE_WIDTH - 24))
        self.title.setToolTip(name)
        fm, width = self.fields["Path"].fontMetrics(), self._field_width()
        self.fields["Path"].setText(wrap_anywhere(p.path, fm, width))
        self.fields["Path"].setToolTip(p.path)
        copies = list(getattr(r, "duplicates", None) or [])
        copies += [f"{c} (same shot, other format)" for c in getattr(r, "companions", None) or []]
        self.fields["Copies"].setText(
            "\n".join(wrap_anywhere(c, fm, width) for c in copies) if copies else "none"
        )
        self.fields["Similar"].setText(self._similar_text(row, r))
        self.fields["Taken"].setText(describe_date(p.taken_at, p.mtime_ns) or "unknown")
        camera = " ".join(x for x in (p.camera_make, p.camera_model) if x) or "unknown"
        self.fields["Camera"].setText(camera)
        size = f"{p.width} × {p.height}" if p.width and p.height else "unknown"
        self.fields["Size"].setText(size + ("" if p.status == "ok" else " · offline"))
        self._show_place(p)
        fine = getattr(r, "fine", None)
        self.fields["Scores"].setText(self._scores_text(r))
        if fine is None:
            error = getattr(r, "check_error", None)
            self.fields["Match"].setText(
                "could not check this photo" if error else "not checked by the model"
            )
            self.fields["Second look"].setText("—")
        else:
            v = verdict(fine, self.cutoff)
            self.fields["Match"].setText(f"{v.mark} {v.words}")
            self.fields["Second look"].setText("yes, looked again" if fine.ve_used else "no")
        rank = f"#{r.rank} of {self.count()}"
        if getattr(r, "in_library", False):
            rank += " · in your library (the query photo itself)"
        if r.coarse_rank and r.coarse_rank != r.rank:
            rank += f" (was #{r.coarse_rank} before checking)"
        self.fields["Rank"].setText(rank)
        match = getattr(r, "text", None)
        if match is not None:
            how = {"text": "found by its words", "clip+text": "its words and its look"}.get(r.stage, "")
            self.fields["Words"].setText(f"“{match.snippet}”" + (f" ({how})" if how else ""))
            self.image.set_highlights([w["box"] for w in match.words])
        else:
            self.fields["Words"].setText("—")
            self.image.set_highlights([])
        self.why.setText("")
        self.prev_btn.setEnabled(row > 0)
        self.next_btn.setEnabled(row < self.count() - 1)
        self.set_actions_enabled(True)
        if self._explain_worker is not None:
            self._explain_worker.cancel.set()
            self._explain_worker = None
        self._load_image(p.path)
        emit(self.row_changed, row)

    def _scores_text(self, r: Any) -> str:
        """The numbers behind the verdict, for the details toggle."""
        lines = []
        fine = getattr(r, "fine", None)
        if fine is not None:
            v = verdict(fine, self.cutoff)
            lines.append(f"match share {v.percent} (cutoff {v.cutoff:.0%}), P(True) / (P(True) + P(False))")
            lines.append(f"P(True) {fine.p_true:.4f} · P(False) {fine.p_false:.4f}")
            ent = f"answer entropy {fine.entropy:.2f}"
            if getattr(fine, "vocab_entropy", None) is not None:
                ent += f" · full vocabulary {fine.vocab_entropy:.2f} nats"
            lines.append(ent)
        lines.append(f"similarity {r.score:.4f} (CLIP cosine)")
        if getattr(r, "fused", None) is not None:
            lines.append(f"ranking score with its words {r.fused:.4f}")
        if getattr(r, "check_error", None):
            lines.append(f"could not check: {r.check_error}")
        return "\n".join(lines)

    def _details_toggled(self, on: bool) -> None:
        self.info.setRowVisible(self.fields["Scores"], on)
        self.details_btn.setText("Hide scores" if on else "Show scores")

    def _similar_text(self, row: int, r: Any) -> str:
        n = len(getattr(r, "similar", None) or [])
        can_toggle = hasattr(self._group_model, "toggle_group")
        if not n:
            if not can_toggle:  # a grid without bursts (the timeline): nothing to look back for
                return "none"
            for i in range(row - 1, -1, -1):
                if r in (getattr(self.get_result(i), "similar", None) or []):
                    return "a similar shot of an earlier photo (same burst)"
            return "none"
        shots = f"{n} similar shot{'s' if n > 1 else ''} taken seconds apart"
        if not can_toggle:
            return shots
        if self._group_model.is_expanded(row):
            return f"{shots}, shown next (▶) · <a href='toggle'>hide them</a>"
        return f"{shots} · <a href='toggle'>show them</a>"

    def _toggle_group(self, *_: Any) -> None:
        if self._group_model is not None and self._group_model.toggle_group(self.row):
            self.show_row(self.row)

    def _load_image(self, path: str) -> None:
        if self._image_worker is not None:
            self._image_worker.cancel.set()
        self.image.set_pixmap(None, "Loading…")
        self.image.set_faces([])
        dpr = self.devicePixelRatioF() or 1.0
        px = int(max(1600, 1200 * dpr))

        def load() -> tuple[QImage, list]:
            from .thumbnails import load_qimage

            faces = []
            if hasattr(self.library, "faces_in"):
                try:
                    faces = [(tuple(f["box"]), f["person_name"] or "") for f in self.library.faces_in(path)]
                except Exception:  # outlines are a bonus: the photo shows without them
                    faces = []
            return load_qimage(path, px), faces

        w = CallWorker(load)
        self._image_worker = w

        # The worker may finish after the preview was closed and its widgets deleted: check before use.
        def done(res: Any, w=w) -> None:
            img, faces = res if isinstance(res, tuple) else (res, [])
            if (
                w is self._image_worker
                and isValid(self.image)
                and isinstance(img, QImage)
                and not img.isNull()
            ):
                self.image.set_pixmap(QPixmap.fromImage(img))
                self.image.set_faces(faces)

        def failed(msg: str, w=w) -> None:
            if w is self._image_worker and isValid(self.image):
                if not os.path.exists(path):  # deleted behind our back: nothing to open or ask about
                    self.image.set_pixmap(None, "This photo is no longer on disk")
                    self.set_actions_enabled(False)
                else:
                    self.image.set_pixmap(None, f"Can't show this photo: {msg}")

        w.signals.finished.connect(done)
        w.signals.failed.connect(failed)
        self.pool.start(w, priority=10)

    def set_actions_enabled(self, on: bool) -> None:
        """Open / Show in folder / Why / Find similar only for a photo that is there."""
        for b in (self.open_btn, self.folder_btn, self.similar_btn):
            b.setEnabled(on)
        self.why_btn.setEnabled(on and self.query is not None and hasattr(self.library, "explain"))

    def step(self, delta: int) -> None:
        target = self.row + delta
        if 0 <= target < self.count():
            self.show_row(target)

    # -- actions -------------------------------------------------------------------------------------
    def open_photo(self) -> None:
        if self.result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.result.photo.path))

    def reveal(self) -> None:
        if self.result is not None:
            show_in_folder(self.result.photo.path)

    def copy_path(self) -> None:
        if self.result is not None:
            QGuiApplication.clipboard().setText(self.result.photo.path)

    def _find_similar(self) -> None:
        if self.result is not None:
            emit(self.find_similar, self.result.photo.path)
            self.close()

    def explain(self) -> None:
        r = self.result
        if r is None or self.query is None:
            return
        if self._explain_worker is not None:
            self._explain_worker.cancel.set()
        self.why.setText("Asking the model…")
        w = ExplainWorker(self.library, r.photo.path, self.query)
        self._explain_worker = w
        chunks: list[str] = []

        def chunk(text: str, w=w) -> None:
            if w is self._explain_worker and isValid(self.why):
                chunks.append(text)
                self.why.setText("“" + "".join(chunks).strip() + "”")

        def failed(msg: str, w=w) -> None:
            if w is self._explain_worker and isValid(self.why):
                self.why.setText(f"No explanation: {msg}")

        def finished(_res: Any, w=w) -> None:
            if w is self._explain_worker and isValid(self.why) and not chunks:
                self.why.setText("The model gave no explanation.")

        w.signals.update.connect(chunk)
        w.signals.failed.connect(failed)
        w.signals.finished.connect(finished)
        self.llm_pool.start(w)

    def done(self, code: int) -> None:  # noqa: D401 - QDialog API (close/Esc end here)
        for w in (self._image_worker, self._explain_worker):
            if w is not None:
                w.cancel.set()
        self._image_worker = self._explain_worker = None  # late results are dropped
        super().done(code)
