"""The Places panel is a country › region › city tree: counts right-aligned, nothing cut off at the default size."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

WAIT = 60_000


def place(kind: str, key: str, name: str, photos: int, country=None, region=None) -> dict:
    return {"kind": kind, "key": key, "name": name, "photos": photos, "country": country, "region": region}


# What LibraryStatus.places holds for a library of several trips (flat, as the catalog counts them).
PLACES = [
    place("city", "city:5128581", "New York City", 120, "United States", "New York"),
    place("city", "city:5391959", "San Francisco", 40, "United States", "California"),
    place("city", "city:5368361", "Los Angeles", 12, "United States", "California"),
    place("city", "city:2267057", "Lisbon", 30, "Portugal"),
    place("city", "city:2735943", "Porto", 7, "Portugal"),
    place("city", "city:2988507", "Paris", 5, "France"),
    place("city", "city:3031582", "Boulogne-Billancourt", 2, "France"),
    place("city", "city:3369157", "Cape Town", 1_234, "South Africa"),
    place("region", "region:US.NY", "New York", 120, "United States"),
    place("region", "region:US.CA", "California", 52, "United States"),
    place("country", "country:US", "United States", 172),
    place("country", "country:PT", "Portugal", 37),
    place("country", "country:FR", "France", 7),
    place("country", "country:ZA", "South Africa", 1_234),
]


@pytest.fixture
def window(qtbot, tmp_path, clip_models_dir) -> MainWindow:
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done = False, True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    yield w
    w.close()


def test_places_nest_country_region_city(window: MainWindow) -> None:
    panel = window.places_panel
    panel.set_places(PLACES)
    tree = panel.tree
    tops = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert tops == ["United States", "Portugal", "France", "South Africa"]  # the engine's order: most photos
    sf = panel.item("city:5391959")
    assert sf.parent().text(0) == "California" and sf.parent().parent().text(0) == "United States"
    assert panel.item("city:2267057").parent().text(0) == "Portugal"  # no region known: under the country
    assert panel.item("city:3369157").text(1) == "1,234"
    for it in panel._items():  # counts in their own right-aligned column; no unexplained marks
        assert it.text(1).replace(",", "").isdigit()
        assert it.textAlignment(1) & Qt.AlignmentFlag.AlignRight
        assert not any(c in it.text(0) for c in "●◆■")
    assert "taken in San Francisco, California, United States" in sf.toolTip(0)
    # a click filters by that place, with its full name
    got = []
    panel.place_chosen.connect(lambda key, label: got.append((key, label)))
    panel.choose("region:US.CA")
    assert got == [("region:US.CA", "California, United States")]
    # a refresh keeps what the user opened and picked
    panel.item("country:PT").setExpanded(False)
    panel.set_places(PLACES)
    assert not panel.item("country:PT").isExpanded() and panel.item("country:US").isExpanded()
    assert tree.currentItem().data(0, Qt.ItemDataRole.UserRole) == "region:US.CA"


def test_nothing_is_cut_off_at_the_default_window_size(qtbot, window: MainWindow) -> None:
    window.places_panel.set_places(PLACES)
    tree = window.places_panel.tree
    for it in window.places_panel._items():
        it.setExpanded(True)
    qtbot.wait(50)  # let the dock re-lay out with the panel's new size hint
    fm = tree.fontMetrics()
    visible_rows = 0
    for it in window.places_panel._items():
        rect = tree.visualItemRect(it)
        if not rect.isValid() or rect.bottom() > tree.viewport().height():
            continue
        visible_rows += 1
        name_room = tree.header().sectionSize(0) - (rect.left() - tree.header().sectionPosition(0))
        assert fm.horizontalAdvance(it.text(0)) <= name_room - 4, it.text(0)
        assert fm.horizontalAdvance(it.text(1)) <= tree.header().sectionSize(1), it.text(1)
    assert tree.header().sectionPosition(1) + tree.header().sectionSize(1) <= tree.viewport().width()
    assert visible_rows >= 10, visible_rows  # a trip's countries and cities, not 4½ rows
