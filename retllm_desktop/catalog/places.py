"""The catalog's places: where each photo with GPS was taken, and the counts the Places list shows."""

from __future__ import annotations

from collections.abc import Iterable

from .connection import CatalogConnection
from .records import PlaceCount


class PlaceTables(CatalogConnection):
    """``photo_places`` rows (computed by places.py from the stored GPS) and lookups by place or area."""

    def photos_needing_places(self, gazetteer_version: str) -> list[tuple[int, float, float]]:
        """(id, lat, lon) of photos with GPS but no place yet, or one computed from another fix or gazetteer."""
        q = (
            "SELECT p.id, p.gps_lat, p.gps_lon FROM photos p LEFT JOIN photo_places pl ON pl.photo_id = p.id "
            "WHERE p.gps_lat IS NOT NULL AND p.gps_lon IS NOT NULL AND (pl.photo_id IS NULL "
            "OR pl.lat IS NOT p.gps_lat OR pl.lon IS NOT p.gps_lon OR pl.gazetteer IS NOT ?)"
        )
        return [(r[0], r[1], r[2]) for r in self._conn.execute(q, (gazetteer_version,))]

    def put_places(
        self, rows: Iterable[tuple[int, float, float, object | None]], gazetteer_version: str
    ) -> int:
        """Store ``(photo_id, lat, lon, places.Place | None)`` rows in one transaction; drops places of photos
        whose GPS is gone. Returns how many rows were written."""
        data = []
        for pid, lat, lon, p in rows:
            fields = (
                (p.city_id, p.city, p.region_code, p.region, p.country_code, p.country, p.distance_km)  # type: ignore[attr-defined]
                if p is not None
                else (None,) * 7
            )
            data.append((pid, lat, lon, gazetteer_version, *fields))
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO photo_places (photo_id, lat, lon, gazetteer, city_id, city, region_code, "
                "region, country_code, country, distance_km) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                data,
            )
            self._conn.execute(
                "DELETE FROM photo_places WHERE photo_id IN (SELECT id FROM photos WHERE gps_lat IS NULL)"
            )
        return len(data)

    def place_of(self, photo_id: int) -> dict | None:
        r = self._conn.execute(
            "SELECT city, region, country, country_code, city_id, region_code FROM photo_places "
            "WHERE photo_id = ? AND country_code IS NOT NULL",
            (photo_id,),
        ).fetchone()
        if r is None:
            return None
        keys = ("city", "region", "country", "country_code", "city_id", "region_code")
        return dict(zip(keys, r, strict=True))

    def place_counts(self) -> list[PlaceCount]:
        """Cities, regions and countries with photos, most photos first (for the Places list and queries)."""
        out: list[PlaceCount] = []
        q = (
            "SELECT city_id, city, region, country, count(*) FROM photo_places WHERE city_id IS NOT NULL "
            "GROUP BY city_id ORDER BY count(*) DESC, city"
        )
        for cid, city, region, country, n in self._conn.execute(q):
            out.append(PlaceCount(f"city:{cid}", "city", city, country, region, n))
        q = (
            "SELECT region_code, region, country, count(*) FROM photo_places WHERE region IS NOT NULL "
            "GROUP BY region_code ORDER BY count(*) DESC, region"
        )
        for code, region, country, n in self._conn.execute(q):
            out.append(PlaceCount(f"region:{code}", "region", region, country, None, n))
        q = (
            "SELECT country_code, country, count(*) FROM photo_places WHERE country_code IS NOT NULL "
            "GROUP BY country_code ORDER BY count(*) DESC, country"
        )
        for code, country, n in self._conn.execute(q):
            out.append(PlaceCount(f"country:{code}", "country", country, None, None, n))
        return out

    def ids_in_place(self, key: str) -> set[int]:
        """Photos whose stored place is ``key`` ("city:<id>", "region:<CC.code>", "country:<CC>")."""
        kind, _, value = key.partition(":")
        column = {"city": "city_id", "region": "region_code", "country": "country_code"}.get(kind)
        if column is None or not value:
            return set()
        arg: object = int(value) if kind == "city" else value
        return {
            r[0] for r in self._conn.execute(f"SELECT photo_id FROM photo_places WHERE {column} = ?", (arg,))
        }

    def gps_in_box(
        self, lat0: float, lat1: float, lon0: float, lon1: float
    ) -> list[tuple[int, float, float]]:
        """(id, lat, lon) of photos whose GPS lies in the box (the caller refines by exact distance)."""
        q = "SELECT id, gps_lat, gps_lon FROM photos WHERE gps_lat BETWEEN ? AND ? AND gps_lon BETWEEN ? AND ?"
        return [(r[0], r[1], r[2]) for r in self._conn.execute(q, (lat0, lat1, lon0, lon1))]
