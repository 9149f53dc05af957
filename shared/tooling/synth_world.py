"""The generator's world: regions, zips and stores, the vendor layouts' headers, and the
writer every layout writes through (docs/generator.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------
# world definition
# --------------------------------------------------------------------------------------

#: name, city, state, zip3, lat, lon, elevation m, annual mean temp F, seasonal amplitude F,
#: diurnal range F, wet-day probability, mean wet-day precip (in), precip season amplitude,
#: precip peak day-of-year, median household income ($)
# fmt: off
_REGIONS: list[tuple[Any, ...]] = [
    ("northeast", "BOSTON", "MA", "021", 42.36, -71.06, 43, 52.0, 22.0, 15.0, 0.33, 0.35, 0.10, 320, 89000),
    ("southeast", "ATLANTA", "GA", "303", 33.75, -84.39, 320, 63.0, 17.0, 18.0, 0.31, 0.45, 0.15, 60, 69000),
    ("midwest", "CHICAGO", "IL", "606", 41.88, -87.63, 180, 51.0, 25.0, 16.0, 0.31, 0.33, 0.25, 170, 71000),
    ("southwest", "PHOENIX", "AZ", "850", 33.45, -112.07, 331, 76.0, 18.0, 25.0, 0.10, 0.25, 0.35, 215, 64000),
    ("west", "LOS ANGELES", "CA", "900", 34.05, -118.24, 89, 65.0, 8.0, 16.0, 0.09, 0.45, 0.90, 30, 76000),
    ("northwest", "SEATTLE", "WA", "981", 47.61, -122.33, 52, 53.0, 14.0, 13.0, 0.42, 0.25, 0.60, 350, 97000),
    ("south_central", "DALLAS", "TX", "752", 32.78, -96.80, 131, 67.0, 20.0, 20.0, 0.22, 0.55, 0.20, 135, 63000),
    ("mountain", "DENVER", "CO", "802", 39.74, -104.99, 1609, 51.0, 22.0, 28.0, 0.20, 0.20, 0.30, 130, 85000),
    ("mid_atlantic", "PHILADELPHIA", "PA", "191", 39.95, -75.17, 12, 56.0, 21.0, 16.0, 0.32, 0.38, 0.10, 200, 57000),
    ("great_lakes", "DETROIT", "MI", "482", 42.33, -83.05, 190, 50.0, 24.0, 17.0, 0.33, 0.30, 0.15, 160, 60000),
    ("plains", "KANSAS CITY", "MO", "641", 39.10, -94.58, 277, 55.0, 25.0, 19.0, 0.25, 0.45, 0.35, 150, 65000),
    ("florida", "MIAMI", "FL", "331", 25.76, -80.19, 2, 77.0, 7.0, 13.0, 0.35, 0.50, 0.50, 230, 62000),
    ("gulf_coast", "HOUSTON", "TX", "770", 29.76, -95.37, 15, 70.0, 15.0, 17.0, 0.28, 0.60, 0.15, 170, 60000),
    ("new_england", "PORTLAND", "ME", "041", 43.66, -70.26, 20, 47.0, 24.0, 17.0, 0.33, 0.40, 0.10, 320, 72000),
    ("new_york", "NEW YORK", "NY", "100", 40.71, -74.01, 10, 55.0, 21.0, 14.0, 0.32, 0.40, 0.10, 200, 82000),
    ("carolinas", "CHARLOTTE", "NC", "282", 35.23, -80.84, 229, 61.0, 19.0, 20.0, 0.30, 0.42, 0.15, 200, 68000),
    ("upper_midwest", "MINNEAPOLIS", "MN", "554", 44.98, -93.27, 264, 46.0, 32.0, 18.0, 0.28, 0.30, 0.45, 180, 78000),
    ("northern_california", "SAN FRANCISCO", "CA", "941", 37.77, -122.42, 16, 58.0, 6.0, 14.0, 0.20, 0.40, 0.85, 20, 120000),  # noqa: E501
]
# fmt: on
_DIRS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
#: holiday -> log-lift at full SKU affinity (applied to the week of the shopping day)
_EVENTS = {"super_bowl": 0.55, "july_4th": 0.5, "thanksgiving": 0.7, "christmas": 0.6}
FORECAST_DAYS = 16

HEADERS = {
    "W1": "Zip,Obs Date,High (F),Low (F),Rain (in),Snow (in)",
    "W2": '"STATION","NAME","DATE","PRCP","SNOW","SNWD","TMAX","TMIN"',
    "S1": "Store Nbr,Item Nbr,Week Ending,Cases Shipped,Units Per Case,Units Returned",
    "S2": "store,sku,delivery_date,qty,returned_qty",
    "D1": "StoreID,Zip,Region,Format,Population,Households,Median HH Income,Median Age",
}
LAYOUTS = {
    "W1": "weather_us_obs_csv",
    "W2": "weather_ghcn_cdo_standard",
    "W2m": "weather_ghcn_cdo_metric",
    "W3": "weather_openmeteo_json",
    "S1": "shipments_erp_weekly_csv",
    "S2": "shipments_daily_deliveries_csv",
    "D1": "demographics_store_master_csv",
    "D2": "demographics_store_master_jsonl",
}


@dataclass(frozen=True)
class Region:
    """One generated region: its place and climate."""

    index: int
    name: str
    city: str
    state: str
    zip3: str
    lat: float
    lon: float
    elevation: float
    tmean_f: float
    tamp_f: float
    dtr_f: float
    p_wet: float
    wet_mean_in: float
    p_season_amp: float
    p_peak_doy: float
    income: float


@dataclass(frozen=True)
class Zip:
    """One generated ZIP code: its place, weather station and population."""

    index: int
    code: str  # 5 digits, zero padded
    region: Region
    lat: float
    lon: float
    elevation: float
    t_offset_f: float
    p_mult: float
    station: str
    station_name: str
    source: str  # "W1", "W2" or "W2m" (observed weather source)
    snow_measured: bool  # W2: station reports SNOW/SNWD
    population: int
    households: int
    income: int
    median_age: float


@dataclass(frozen=True)
class Store:
    """One generated store: its region, ZIP, size, format and demand group."""

    index: int
    store_id: str
    region: Region
    zip: Zip
    large: bool
    format_raw: str
    group: int  # 0: S1 + D1, 1: S2 + D2
    census_missing: tuple[bool, bool, bool, bool]


def _region_list(n: int) -> list[Region]:
    out = []
    for i in range(n):
        base = _REGIONS[i % len(_REGIONS)]
        k = i // len(_REGIONS)
        name, city, state, zip3, lat, lon, elev, tm, ta, dtr, pw, wm, psa, ppk, inc = base
        if k:  # beyond the table: a neighbouring territory of the same climate
            name = f"{name}_{k + 1}"
            zip3 = f"{(int(zip3) + 2 * k) % 1000:03d}"
            lat, lon, tm = lat + 0.4 * k, lon - 0.4 * k, tm - 1.0 * k
        out.append(Region(i, name, city, state, zip3, lat, lon, elev, tm, ta, dtr, pw, wm, psa, ppk, inc))
    return out


def _spawn(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _build_world(rng: np.random.Generator, regions: list[Region], stores_per_region: int):
    zips: list[Zip] = []
    stores: list[Store] = []
    used_stations: set[str] = set()
    n_reg = len(regions)
    for reg in regions:
        n_zip = min(stores_per_region, 100)
        last2 = np.sort(rng.choice(100, size=n_zip, replace=False))
        n_w1 = (n_zip + 1) // 2
        reg_zips: list[Zip] = []
        for j, l2 in enumerate(last2):
            code = f"{reg.zip3}{int(l2):02d}"
            dlat, dlon = rng.uniform(-0.25, 0.25, size=2)
            elev = max(0.0, reg.elevation + float(rng.normal(0, 0.15 * reg.elevation + 10)))
            t_off = float(rng.normal(0, 1.2)) - (elev - reg.elevation) * 0.0036  # lapse rate, F/m
            p_mult = float(rng.lognormal(0, 0.12))
            airport = j == 0
            while True:
                if airport:
                    st = f"USW000{int(rng.integers(10000, 99999)):05d}"
                    nm = f"{reg.city} {'INTERNATIONAL' if rng.random() < 0.5 else 'FAA'} AIRPORT, {reg.state} US"
                else:
                    st = f"USC00{int(rng.integers(100000, 999999)):06d}"
                    nm = f"{reg.city} {rng.uniform(0.5, 9.9):.1f} {_DIRS[int(rng.integers(0, 8))]}, {reg.state} US"
                if st not in used_stations:
                    used_stations.add(st)
                    break
            pop = int(rng.lognormal(np.log(32000), 0.5))
            hh = int(pop / rng.uniform(2.2, 2.9))
            inc = int(round(reg.income * rng.lognormal(0, 0.25), -2))
            age = round(float(np.clip(rng.normal(38.5, 4.5), 24, 60)), 1)
            reg_zips.append(
                Zip(
                    len(zips) + j,
                    code,
                    reg,
                    round(reg.lat + dlat, 4),
                    round(reg.lon + dlon, 4),
                    round(elev, 1),
                    t_off,
                    p_mult,
                    st,
                    nm,
                    "W1" if j < n_w1 else "W2",
                    bool(reg.tmean_f < 66 or rng.random() < 0.3),
                    pop,
                    hh,
                    inc,
                    age,
                )
            )
        zips.extend(reg_zips)
        for j in range(stores_per_region):
            z = reg_zips[j % n_zip]
            large = bool(rng.random() < 0.4)
            fmt = (["Large", "LARGE", "large"] if large else ["Small", "SMALL", "small"])[
                int(rng.choice(3, p=[0.6, 0.2, 0.2]))
            ]
            # two regions or more: by region; a single region: split its stores in halves
            group = reg.index % 2 if n_reg >= 2 else int(j >= (stores_per_region + 1) // 2)
            gaps = rng.random(4) < 0.08
            missing = (bool(gaps[0]), bool(gaps[1]), bool(gaps[2]), bool(gaps[3]))
            sid = f"S{len(stores) + 1:04d}"
            stores.append(Store(len(stores), sid, reg, z, large, fmt, group, missing))
    # a region of two stores or more has both formats: if its draw gave one, the last store
    # takes the other (no extra draws, so the rest of the world is unchanged)
    for reg in regions:
        mine = [s for s in stores if s.region.index == reg.index]
        if len(mine) >= 2 and len({s.large for s in mine}) == 1:
            last = mine[-1]
            flipped = not last.large
            fmt = last.format_raw.replace("Large", "Small").replace("LARGE", "SMALL").replace("large", "small")
            if flipped:
                fmt = last.format_raw.replace("Small", "Large").replace("SMALL", "LARGE").replace("small", "large")
            stores[last.index] = Store(**{**last.__dict__, "large": flipped, "format_raw": fmt})
    # exactly one zip is published in metric units: the last W2 zip
    w2 = [z for z in zips if z.source == "W2"]
    if w2:
        metric = w2[-1]
        zips[metric.index] = Zip(**{**metric.__dict__, "source": "W2m"})
        stores = [Store(**{**s.__dict__, "zip": zips[s.zip.index]}) for s in stores]
    return zips, stores


# --------------------------------------------------------------------------------------
# weather
# --------------------------------------------------------------------------------------


def _f1(x: np.ndarray, nd: int) -> list[str]:
    """Fixed-decimal strings, never ``-0.0``."""
    fmt = f"%.{nd}f"
    return [fmt % v for v in (np.round(x, nd) + 0.0).tolist()]


def _f_to_c(x: np.ndarray) -> np.ndarray:
    return (x - 32.0) * 5.0 / 9.0


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.files: list[dict[str, Any]] = []
        self._written: dict[str, dict[str, Any]] = {}

    def text(self, rel: str, code: str, header: str | None, lines: list[str], append: bool = False) -> None:
        """Write ``rel`` (header, then lines); with ``append``, a file this writer already
        wrote gets the lines at its end instead (the header once), and its entry grows."""
        path = self.out_dir / rel
        entry = self._written.get(rel) if append else None
        if entry is not None:
            data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
            with open(path, "ab") as f:
                f.write(data)
            entry["rows"] += len(lines)
            entry["bytes"] += len(data)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        body = ([header] if header is not None else []) + lines
        data = ("\n".join(body) + "\n").encode("utf-8")
        path.write_bytes(data)
        self._add({"path": rel, "code": code, "layout": LAYOUTS[code], "rows": len(lines), "bytes": len(data)})

    def json(self, rel: str, code: str, doc: dict[str, Any], rows: int) -> None:
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        path.write_bytes(data)
        self._add({"path": rel, "code": code, "layout": LAYOUTS[code], "rows": rows, "bytes": len(data)})

    def _add(self, entry: dict[str, Any]) -> None:
        self.files.append(entry)
        self._written[entry["path"]] = entry
