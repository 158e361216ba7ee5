"""The app's trust controls (pytest-qt): "Check the next 10" and "Only true matches"."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from retllm_desktop.verdict import match_share  # noqa: E402

from .test_gui import WAIT, close_window, index_folder, make_window, models_dir, photos, search, settings  # noqa: E402,F401


def test_check_the_next_and_only_true_matches(qtbot, tmp_path, settings, models_dir, photos):  # noqa: F811
    settings.rerank = True
    settings.rerank_k = 2
    w = make_window(qtbot, settings, tmp_path, models_dir)
    assert w._mllm_ok
    index_folder(qtbot, w, photos)
    updates = []
    w.search_updated.connect(updates.append)
    search(qtbot, w, "red car")
    first = updates[-1]
    assert first.phase == "done" and sum(r.fine is not None for r in first.results) == 2
    assert w.next_btn.isVisible() and w.next_btn.text() == "Check the next 2"
    assert not w.next_btn.isFlat()  # a button that looks like one, not status text
    assert w.rerank_label.text().startswith("Checked 2 photos")
    shown_before = [r.photo.id for r in w.model.results()]
    # the preview shows the entropy that orders tied scores, beside the one that triggers the second look
    row = next(i for i, r in enumerate(w.model.results()) if r.fine is not None)
    fine = w.model.result(row).fine
    p = w.open_preview(row)
    assert f"full vocabulary {fine.vocab_entropy:.2f} nats" in p.fields["Scores"].text()
    p.close()

    updates.clear()
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.mouseClick(w.next_btn, Qt.MouseButton.LeftButton)
    assert updates and all(u.phase != "coarse" for u in updates)  # the grid never fell back to coarse order
    final = updates[-1]
    checked = [r for r in final.results if r.fine is not None]
    assert len(checked) == 4 and {r.photo.id for r in first.results if r.fine} < {r.photo.id for r in checked}
    assert [r.photo.id for r in w.model.results()] == [r.photo.id for r in final.visible]
    assert sorted(r.photo.id for r in w.model.results()) == sorted(shown_before)
    assert w.rerank_label.text().startswith("Checked 4 photos")  # all checked so far, not the last batch

    updates.clear()
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.only_check.setChecked(True)
    final = updates[-1]
    shown = w.model.results()
    assert all(r.fine is not None and match_share(r.fine) > 0.5 for r in shown)
    assert len(shown) <= 2 and "hidden (not matching or not checked)" in w.status_label.text()
    w.only_check.setChecked(False)
    # the count belonged to that search: cleared with it
    w.clear_search()
    assert not w.rerank_label.isVisible() and not w.next_btn.isVisible()
    close_window(w)
