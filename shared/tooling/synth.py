"""Seeded, reproducible generator of RAW vendor files for ForecastOps.

The design notes: docs/generator.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
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


def _doy(days: list[date]) -> np.ndarray:
    return np.array([d.timetuple().tm_yday for d in days], dtype=float)


def _simulate_weather(rng: np.random.Generator, zips: list[Zip], days: list[date]) -> dict[str, np.ndarray]:
    """Daily truth per zip (rows) and day (columns): tmax/tmin F, precip/snow/snow depth in."""
    Z, D = len(zips), len(days)
    doy = _doy(days)[None, :]
    reg_idx = np.array([z.region.index for z in zips])
    uniq, reg_pos = np.unique(reg_idx, return_inverse=True)
    R = len(uniq)
    col = lambda f: np.array([f(z) for z in zips], dtype=float)[:, None]  # noqa: E731
    tm, ta, dtr = (
        col(lambda z: z.region.tmean_f + z.t_offset_f),
        col(lambda z: z.region.tamp_f),
        col(lambda z: z.region.dtr_f),
    )
    season = tm - ta * np.cos(2 * np.pi * (doy - 20.0) / 365.25)

    # temperature anomalies: regional AR(1) (shared by the region's zips) + local AR(1)
    # (day-to-day variability is larger in continental climates and in winter)
    phi_r, phi_l = 0.75, 0.5
    first = np.unique(reg_pos, return_index=True)[1]
    sd_r = (2.0 + ta[first] / 6.0) * (1.0 + 0.35 * np.cos(2 * np.pi * (doy - 20.0) / 365.25))
    eps_r = rng.standard_normal((R, D)) * sd_r * np.sqrt(1 - phi_r**2)
    eps_l = rng.standard_normal((Z, D)) * 1.5 * np.sqrt(1 - phi_l**2)
    a_r = np.empty((R, D))
    a_l = np.empty((Z, D))
    a_r[:, 0] = eps_r[:, 0] / np.sqrt(1 - phi_r**2)
    a_l[:, 0] = eps_l[:, 0] / np.sqrt(1 - phi_l**2)
    for t in range(1, D):
        a_r[:, t] = phi_r * a_r[:, t - 1] + eps_r[:, t]
        a_l[:, t] = phi_l * a_l[:, t - 1] + eps_l[:, t]
    tmean = season + a_r[reg_pos] + a_l

    # wet days: two-state Markov chain, seasonally modulated, regionally correlated
    pw = col(lambda z: z.region.p_wet) * (
        1
        + col(lambda z: z.region.p_season_amp) * np.cos(2 * np.pi * (doy - col(lambda z: z.region.p_peak_doy)) / 365.25)
    )
    pw = np.clip(pw, 0.01, 0.8)
    p11 = np.minimum(0.85, pw + 0.25)
    p01 = pw * (1 - p11) / (1 - pw)
    u_reg = rng.random((R, D))[reg_pos]
    u_loc = rng.random((Z, D))
    u = np.where(rng.random((Z, D)) < 0.7, u_reg, u_loc)
    wet = np.zeros((Z, D), dtype=bool)
    wet[:, 0] = u[:, 0] < pw[:, 0]
    for t in range(1, D):
        wet[:, t] = u[:, t] < np.where(wet[:, t - 1], p11[:, t], p01[:, t])
    mean_amt = col(lambda z: z.region.wet_mean_in * z.p_mult)
    amount = rng.gamma(0.7, 1.0, size=(Z, D)) * mean_amt / 0.7
    prcp = np.where(wet, np.minimum(amount, 6.0), 0.0)

    # clouds and rain damp the diurnal range; tmin < tmax by at least 2 F
    rng_f = dtr * np.where(wet, 0.6, 1.0) * rng.lognormal(0, 0.15, size=(Z, D))
    rng_f = np.maximum(rng_f, 2.0)
    tmax = tmean + rng_f / 2
    tmin = tmean - rng_f / 2

    # snow: share of the precipitation falling as snow, 8-18 in of snow per inch of water
    frac = np.clip((33.0 - tmean) / 6.0, 0.0, 1.0)
    ratio = np.clip(10.0 + (32.0 - tmean) * 0.25, 8.0, 18.0)
    snow = prcp * frac * ratio
    snwd = np.zeros((Z, D))
    depth = np.zeros(Z)
    for t in range(D):
        melt = np.maximum(tmax[:, t] - 32.0, 0.0) * 0.12 + np.where(frac[:, t] < 1, prcp[:, t] * 0.5, 0.0)
        depth = np.maximum(depth * 0.97 - melt, 0.0) + snow[:, t]
        snwd[:, t] = depth
    return {"tmax": tmax, "tmin": tmin, "prcp": prcp, "snow": snow, "snwd": snwd}


def _f1(x: np.ndarray, nd: int) -> list[str]:
    """Fixed-decimal strings, never ``-0.0``."""
    fmt = f"%.{nd}f"
    return [fmt % v for v in (np.round(x, nd) + 0.0).tolist()]


def _f_to_c(x: np.ndarray) -> np.ndarray:
    return (x - 32.0) * 5.0 / 9.0


# --------------------------------------------------------------------------------------
# demand
# --------------------------------------------------------------------------------------


def _second_sunday_feb(y: int) -> date:
    d = date(y, 2, 1)
    first = d + timedelta(days=(6 - d.weekday()) % 7)
    return first + timedelta(days=7 if y >= 2022 else 0)


def _thanksgiving(y: int) -> date:
    d = date(y, 11, 1)
    return d + timedelta(days=(3 - d.weekday()) % 7 + 21)


def _event_weeks(first_sunday: date, weeks: int) -> dict[str, list[tuple[int, float]]]:
    """Event -> [(week index, weight)] within the simulated weeks (shopping day = day before)."""
    last = first_sunday + timedelta(days=7 * weeks - 1)
    out: dict[str, list[tuple[int, float]]] = {e: [] for e in _EVENTS}
    for y in range(first_sunday.year, last.year + 1):
        days = {
            "super_bowl": [(_second_sunday_feb(y), 1.0)],
            "july_4th": [(date(y, 7, 4), 1.0)],
            "thanksgiving": [(_thanksgiving(y), 1.0)],
            "christmas": [(date(y, 12, 25), 1.0), (date(y, 12, 18), 0.4)],
        }
        for e, items in days.items():
            for d, w in items:
                wk = ((d - timedelta(days=1)) - first_sunday).days // 7
                if 0 <= wk < weeks:
                    out[e].append((wk, w))
    return out


def _simulate_demand(
    rng: np.random.Generator,
    stores: list[Store],
    n_sku: int,
    week_ends: list[date],
    first_sunday: date,
    wk_tmax: np.ndarray,
    wk_prcp: np.ndarray,
    expected: dict[str, np.ndarray] | None = None,
):
    """Weekly units (stores x skus x weeks) and SKU attributes; ``expected["mu"]`` receives
    the expected units each week's draw came from (the oracle), when ``expected`` is given."""
    S, K, W = len(stores), n_sku, len(week_ends)
    sku_ids = [f"SKU-{v}" for v in np.sort(10000 + rng.choice(90000, size=K, replace=False)).tolist()]
    fast = rng.random(K) < 0.45
    if K >= 2:  # at least one fast and one slow mover
        fast[0], fast[-1] = True, False
    # units per large-store week: fast movers ~80, slow movers ~15 (a small store sells
    # ~45% of that); case packs hold a few days of a store's sales
    base = np.where(fast, rng.lognormal(np.log(80), 0.45, K), rng.lognormal(np.log(15), 0.3, K))
    upc = np.where(fast, rng.choice([6, 12], size=K), rng.choice([2, 4], size=K, p=[0.5, 0.5]))
    kind = rng.choice(3, size=K, p=[0.3, 0.2, 0.5])  # 0 warm-weather, 1 cold-weather, 2 neutral
    beta_t = np.where(kind == 0, rng.uniform(0.15, 0.3, K), np.where(kind == 1, -rng.uniform(0.1, 0.22, K), 0.0))
    amp = np.where(kind == 2, rng.uniform(0.1, 0.4, K), rng.uniform(0.0, 0.08, K))  # seasonal log-amplitude
    peak = rng.uniform(0, 365, K)
    trend = rng.normal(0, 0.15, K)  # log-change per year (items grow or decline)
    ret_p = np.where(fast, rng.uniform(0.005, 0.02, K), rng.uniform(0.01, 0.05, K))
    disp = np.where(fast, 30.0, 15.0)  # negative-binomial shape (gamma CV 0.18 / 0.26 on top of Poisson)

    pop = np.array([s.zip.population for s in stores], dtype=float)
    scale = np.where([s.large for s in stores], 1.0, 0.45) * (pop / 32000.0) ** 0.15
    scale *= rng.lognormal(0, 0.2, S)
    reg_idx = np.array([s.region.index for s in stores])
    reg_sku = rng.normal(0, 0.12, (reg_idx.max() + 1, K))[reg_idx]  # region x sku taste

    mid = np.array([(w - timedelta(days=3)).timetuple().tm_yday for w in week_ends], dtype=float)
    years = np.arange(W) * 7 / 365.25
    log_mu = (
        np.log(base)[None, :, None]
        + np.log(scale)[:, None, None]
        + reg_sku[:, :, None]
        + (amp[:, None] * np.cos(2 * np.pi * (mid[None, :] - peak[:, None]) / 365.25))[None]
        + (trend[:, None] * years[None, :])[None]
        + np.clip(beta_t[None, :, None] * ((wk_tmax - 65.0) / 10.0)[:, None, :], -1.2, 1.2)
        - 0.05 * np.clip(wk_prcp, 0, 4)[:, None, :]
    )
    lift = np.zeros((K, W))
    for e, strength in _EVENTS.items():
        aff = np.where(rng.random(K) < 0.4, 0.0, rng.uniform(0.2, 1.0, K))
        if e == "july_4th":
            aff = np.where(kind == 0, np.maximum(aff, 0.6), aff)
        for wk, w in _event_weeks(first_sunday, W)[e]:
            lift[:, wk] += aff * strength * w
    log_mu += lift[None]
    mu = np.exp(log_mu)
    if expected is not None:
        expected["mu"] = mu
    lam = mu * rng.gamma(disp[None, :, None], 1.0 / disp[None, :, None], size=(S, K, W))
    units = rng.poisson(lam).astype(np.int64)
    return sku_ids, units, upc.astype(np.int64), ret_p


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.files: list[dict[str, Any]] = []

    def text(self, rel: str, code: str, header: str | None, lines: list[str]) -> None:
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = ([header] if header is not None else []) + lines
        data = ("\n".join(body) + "\n").encode("utf-8")
        path.write_bytes(data)
        self.files.append({"path": rel, "code": code, "layout": LAYOUTS[code], "rows": len(lines), "bytes": len(data)})

    def json(self, rel: str, code: str, doc: dict[str, Any], rows: int) -> None:
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        path.write_bytes(data)
        self.files.append({"path": rel, "code": code, "layout": LAYOUTS[code], "rows": rows, "bytes": len(data)})


def _write_us_obs(
    wr: _Writer, rng: np.random.Generator, zips: list[Zip], obs_days: list[date], t: dict[str, np.ndarray]
) -> None:
    D = len(obs_days)
    us_dates = [d.strftime("%m/%d/%Y") for d in obs_days]
    years = np.array([d.year for d in obs_days])
    # W1: per region and year, zip (unpadded) then date
    by_region: dict[str, list[Zip]] = {}
    for z in zips:
        if z.source == "W1":
            by_region.setdefault(z.region.name, []).append(z)
    snow_missing = rng.random((len(zips), D))
    for rname, rzips in by_region.items():
        per_year: dict[int, list[str]] = {}
        for z in rzips:
            i = z.index
            hi, lo = _f1(t["tmax"][i], 1), _f1(t["tmin"][i], 1)
            rain, snow = _f1(t["prcp"][i], 2), _f1(t["snow"][i], 2)
            p_miss = 0.6 if z.region.tmean_f >= 66 else 0.1
            miss = snow_missing[i] < p_miss
            zc = str(int(z.code))
            for j in range(D):
                per_year.setdefault(int(years[j]), []).append(
                    f"{zc},{us_dates[j]},{hi[j]},{lo[j]},{rain[j]},{'' if miss[j] else snow[j]}"
                )
        for y in sorted(per_year):
            wr.text(f"weather/us_obs/region={rname}/{y}.csv", "W1", HEADERS["W1"], per_year[y])


def _write_ghcn(
    wr: _Writer, rng: np.random.Generator, zips: list[Zip], obs_days: list[date], t: dict[str, np.ndarray]
) -> None:
    D = len(obs_days)
    iso_dates = [d.isoformat() for d in obs_days]
    # W2: one station file per zip; SNOW/SNWD empty where not measured (and ~3% of days)
    snwd_missing = rng.random((len(zips), D)) < 0.03
    for z in zips:
        if z.source not in ("W2", "W2m"):
            continue
        i = z.index
        if z.source == "W2":
            prcp, snow, snwd = _f1(t["prcp"][i], 2), _f1(t["snow"][i], 1), _f1(t["snwd"][i], 1)
            tx, tn = _f1(t["tmax"][i], 0), _f1(t["tmin"][i], 0)
            rel = f"weather/ghcn/zip={z.code}/{z.station}.csv"
        else:
            prcp = _f1(t["prcp"][i] * 25.4, 1)
            snow, snwd = _f1(t["snow"][i] * 25.4, 0), _f1(t["snwd"][i] * 25.4, 0)
            tx, tn = _f1(_f_to_c(t["tmax"][i]), 1), _f1(_f_to_c(t["tmin"][i]), 1)
            rel = f"weather/ghcn/zip={z.code}/format=weather_ghcn_cdo_metric/{z.station}.csv"
        lines = []
        for j in range(D):
            sn = snow[j] if z.snow_measured else ""
            sd = snwd[j] if z.snow_measured and not snwd_missing[i, j] else ""
            lines.append(
                f'"{z.station}","{z.station_name}","{iso_dates[j]}","{prcp[j]}","{sn}","{sd}","{tx[j]}","{tn[j]}"'
            )
        wr.text(rel, "W2m" if z.source == "W2m" else "W2", HEADERS["W2"], lines)


def _write_weather(
    wr: _Writer,
    rng: np.random.Generator,
    zips: list[Zip],
    obs_days: list[date],
    truth: dict[str, np.ndarray],
    issue_dates: list[date],
    all_days: list[date],
) -> None:
    D = len(obs_days)
    t = {k: v[:, :D] for k, v in truth.items()}

    _write_us_obs(wr, rng, zips, obs_days, t)
    _write_ghcn(wr, rng, zips, obs_days, t)

    # W3: forecasts issued each week-ending Saturday for the next 16 days, every zip
    pos = {d: k for k, d in enumerate(all_days)}
    all_iso = [d.isoformat() for d in all_days]
    lead = np.arange(1, FORECAST_DAYS + 1, dtype=float)
    tmax_c, tmin_c = _f_to_c(truth["tmax"]), _f_to_c(truth["tmin"])
    prcp_mm = truth["prcp"] * 25.4
    for z in zips:
        i = z.index
        clim_mm = z.region.wet_mean_in * z.p_mult * 25.4  # mean wet-day amount
        for iss in issue_dates:
            k0 = pos[iss] + 1
            sl = slice(k0, k0 + FORECAST_DAYS)
            err_common = rng.normal(0, 1.0 + 0.25 * lead)
            fx = tmax_c[i, sl] + err_common + rng.normal(0, 0.4, FORECAST_DAYS)
            fn = tmin_c[i, sl] + err_common + rng.normal(0, 0.4, FORECAST_DAYS)
            fx = np.minimum(fx, 56.0)  # never above the world record (the lake rejects > 60 C)
            fn = np.minimum(fn, fx - 0.2)
            # precipitation: the truth with multiplicative error; with a probability growing
            # with lead time the day is replaced by a climatological draw (wet or dry)
            fp = prcp_mm[i, sl] * rng.lognormal(0, 0.35, FORECAST_DAYS)
            clim = np.where(
                rng.random(FORECAST_DAYS) < z.region.p_wet, rng.gamma(0.7, clim_mm / 0.7, FORECAST_DAYS), 0.0
            )
            fp = np.where(rng.random(FORECAST_DAYS) < lead / (FORECAST_DAYS + 4), clim, fp)
            fp = np.where(fp < 0.1, 0.0, fp)
            fmean = (fx + fn) / 2
            fs = np.where(fmean < 1.0, fp * np.clip((1.0 - fmean) / 3.0, 0, 1) * 0.7, 0.0)
            doc = {
                "latitude": z.lat,
                "longitude": z.lon,
                "generationtime_ms": round(float(rng.uniform(0.02, 0.4)), 6),
                "utc_offset_seconds": 0,
                "timezone": "GMT",
                "timezone_abbreviation": "GMT",
                "elevation": z.elevation,
                "daily_units": {
                    "time": "iso8601",
                    "temperature_2m_max": "°C",
                    "temperature_2m_min": "°C",
                    "precipitation_sum": "mm",
                    "snowfall_sum": "cm",
                },
                "daily": {
                    "time": all_iso[sl],
                    "temperature_2m_max": (np.round(fx, 1) + 0.0).tolist(),
                    "temperature_2m_min": (np.round(fn, 1) + 0.0).tolist(),
                    "precipitation_sum": (np.round(fp, 1) + 0.0).tolist(),
                    "snowfall_sum": (np.round(fs, 2) + 0.0).tolist(),
                },
            }
            wr.json(
                f"weather/openmeteo/zip={z.code}/issued_on={iss.isoformat()}/forecast.json", "W3", doc, FORECAST_DAYS
            )


def _write_shipments(
    wr: _Writer,
    rng: np.random.Generator,
    stores: list[Store],
    sku_ids: list[str],
    units: np.ndarray,
    upc: np.ndarray,
    ret_p: np.ndarray,
    week_ends: list[date],
) -> None:
    S, K, W = units.shape
    # S1: ERP, cases (stochastic rounding of units), one file per region and ISO week;
    # every ranged store x item appears every week, zero weeks included
    erp = [s for s in stores if s.group == 0]
    if erp:
        idx = np.array([s.index for s in erp])
        u = units[idx]
        cases = np.floor(u / upc[None, :, None] + rng.random(u.shape)).astype(np.int64)
        shipped = cases * upc[None, :, None]
        returned = rng.binomial(shipped, np.broadcast_to(ret_p[None, :, None], shipped.shape))
        regions: dict[str, list[int]] = {}
        for r, s in enumerate(erp):
            regions.setdefault(s.region.name, []).append(r)
        for rname, rows in regions.items():
            for w, we in enumerate(week_ends):
                iy, iw, _ = we.isocalendar()
                we_s = we.strftime("%Y/%m/%d")
                lines = [
                    f"{erp[r].store_id},{sku_ids[k]},{we_s},{cases[r, k, w]},{upc[k]},{returned[r, k, w]}"
                    for r in rows
                    for k in range(K)
                ]
                wr.text(f"shipments/erp/region={rname}/{iy}-W{iw:02d}.csv", "S1", HEADERS["S1"], lines)

    # S2: DSD delivery lines, units split over 1-4 distinct days Mon..Sat of the week
    dsd = [s for s in stores if s.group == 1]
    if not dsd:
        return
    idx = np.array([s.index for s in dsd])
    u = units[idx]  # (S2, K, W)
    r_i, k_i, w_i = np.nonzero(u > 0)
    q = u[r_i, k_i, w_i]
    M = len(q)
    max_n = np.where(upc[k_i] >= 12, 4, 2)
    n_del = np.minimum(np.minimum(q, max_n), rng.integers(2, 5, size=M))
    n_del = np.maximum(n_del, 1)
    # 0 = Monday .. 5 = Saturday; no deliveries on July 4th, Thanksgiving or Christmas Day
    closed = np.zeros((W, 6), dtype=bool)
    for w, we in enumerate(week_ends):
        for j in range(6):
            d = we - timedelta(days=5 - j)
            closed[w, j] = (d.month, d.day) in ((7, 4), (12, 25)) or d == _thanksgiving(d.year)
    keys = rng.random((M, 6)) + closed[w_i]
    day_order = np.argsort(keys, axis=1)[:, :4]
    wts = rng.gamma(2.0, 1.0, size=(M, 4)) * (np.arange(4)[None, :] < n_del[:, None])
    wts /= wts.sum(axis=1, keepdims=True)
    parts = np.floor(wts * q[:, None]).astype(np.int64)
    parts[:, 0] += q - parts.sum(axis=1)
    rets = rng.binomial(parts, np.broadcast_to(ret_p[k_i][:, None], parts.shape))
    route = rng.integers(16, 36, size=len(dsd))  # store's route slot, in quarter hours from midnight
    jitter = rng.integers(-2, 7, size=(M, 4))
    per_day: dict[date, list[tuple[int, int, int, str]]] = {}
    for m in range(M):
        r, k, w = int(r_i[m]), int(k_i[m]), int(w_i[m])
        monday = week_ends[w] - timedelta(days=5)
        for j in range(4):
            qty = int(parts[m, j])
            if qty <= 0:
                continue
            day = monday + timedelta(days=int(day_order[m, j]))
            quarter = int(route[r] + jitter[m, j])
            ts = datetime(day.year, day.month, day.day, quarter // 4, 15 * (quarter % 4))
            per_day.setdefault(day, []).append(
                (r, k, quarter, f"{dsd[r].store_id},{sku_ids[k]},{ts.isoformat()},{qty},{int(rets[m, j])}")
            )
    for day in sorted(per_day):
        deliveries = sorted(per_day[day])
        wr.text(f"shipments/deliveries/{day.isoformat()}.csv", "S2", HEADERS["S2"], [x[3] for x in deliveries])


def _write_demographics(wr: _Writer, stores: list[Store]) -> None:
    d1, d2 = [], []
    for s in stores:
        z = s.zip
        vals: list[Any] = [z.population, z.households, z.income, z.median_age]
        vals = [None if miss else v for v, miss in zip(vals, s.census_missing, strict=True)]
        if s.group == 0:
            cells = ["" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v)) for v in vals]
            d1.append(",".join([s.store_id, z.code, s.region.name, s.format_raw, *cells]))
        else:
            doc = {
                "store_id": s.store_id,
                "zip": z.code,
                "region": s.region.name,
                "format": "Large" if s.large else "Small",
                "census": dict(
                    zip(("population", "households", "median_household_income", "median_age"), vals, strict=True)
                ),
            }
            d2.append(json.dumps(doc))
    if d1:
        wr.text("demographics/store_master.csv", "D1", HEADERS["D1"], d1)
    if d2:
        wr.text("demographics/store_master.jsonl", "D2", None, d2)


def write_oracle(
    oracle_dir: Path, stores: list[Store], sku_ids: list[str], week_ends: list[date], mu: np.ndarray
) -> str:
    """The oracle: ``expected_demand.csv`` with ``store_id,sku,week_start,expected_units``, the
    mean of the distribution each week's units were drawn from (before the demand noise, the
    case rounding and the split into deliveries, all unbiased), one row per store x SKU x week,
    ``week_start`` the Monday of the Sunday..Saturday week as in the curated shipments.
    No forecast can know more; its error is the noise floor."""
    path = Path(oracle_dir) / "expected_demand.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    mondays = [(w - timedelta(days=5)).isoformat() for w in week_ends]
    lines = ["store_id,sku,week_start,expected_units"]
    for s, store in enumerate(stores):
        for k, sku in enumerate(sku_ids):
            values = _f1(mu[s, k], 4)
            lines.extend(f"{store.store_id},{sku},{mondays[w]},{values[w]}" for w in range(len(week_ends)))
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return str(path)


# --------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------


#: the phases of :func:`generate`, in order, as its ``progress`` callback names them
PHASES = ("simulating weather", "simulating demand", "writing weather", "writing shipments", "writing demographics")


def generate(
    out_dir: Path,
    *,
    regions: int,
    stores_per_region: int,
    skus: int,
    weeks: int,
    start: date,
    seed: int,
    progress: Callable[[str], None] | None = None,
    oracle_dir: Path | None = None,
) -> dict[str, Any]:
    """Write one simulated world's raw vendor files under ``out_dir``; return a summary.

    Weeks run Sunday..Saturday; week 0 is the one containing ``start`` (use a Monday), and
    weather is observed from that Sunday to the last week-ending Saturday. The summary has
    ``files`` (path, code, layout, rows, bytes, in write order), totals, the stores
    (id, zip, region, format, raw sources) and the SKU ids. Existing files at the same paths
    are overwritten; nothing else in ``out_dir`` is touched. ``progress`` is called with the
    name of each phase (:data:`PHASES`) as it starts.

    With ``oracle_dir`` (a folder outside ``out_dir``, so that it never lands in the lake's
    raw area), also writes ``<oracle_dir>/expected_demand.csv``: the expected units each
    week's shipments were drawn from (see :func:`write_oracle`). The raw files are the same
    with or without it.
    """
    step = progress or (lambda phase: None)
    for name, v in (("regions", regions), ("stores_per_region", stores_per_region), ("skus", skus), ("weeks", weeks)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1 (got {v})")
    out_dir = Path(out_dir)
    rng_world, rng_wx, rng_dem, rng_wxout, rng_ship = _spawn(seed, 5)

    region_list = _region_list(regions)
    zips, stores = _build_world(rng_world, region_list, stores_per_region)

    first_sunday = start - timedelta(days=(start.weekday() + 1) % 7)
    week_ends = [first_sunday + timedelta(days=6 + 7 * w) for w in range(weeks)]
    n_obs = 7 * weeks
    all_days = [first_sunday + timedelta(days=k) for k in range(n_obs + FORECAST_DAYS)]
    obs_days = all_days[:n_obs]

    step(PHASES[0])
    truth = _simulate_weather(rng_wx, zips, all_days)
    zpos = np.array([s.zip.index for s in stores])
    wk_tmax = truth["tmax"][:, :n_obs].reshape(len(zips), weeks, 7).mean(axis=2)[zpos]
    wk_prcp = truth["prcp"][:, :n_obs].reshape(len(zips), weeks, 7).sum(axis=2)[zpos]
    step(PHASES[1])
    expected: dict[str, np.ndarray] = {}
    sku_ids, units, upc, ret_p = _simulate_demand(
        rng_dem, stores, skus, week_ends, first_sunday, wk_tmax, wk_prcp, expected
    )

    wr = _Writer(out_dir)
    step(PHASES[2])
    _write_weather(wr, rng_wxout, zips, obs_days, truth, week_ends, all_days)
    step(PHASES[3])
    _write_shipments(wr, rng_ship, stores, sku_ids, units, upc, ret_p, week_ends)
    step(PHASES[4])
    _write_demographics(wr, stores)
    oracle = write_oracle(Path(oracle_dir), stores, sku_ids, week_ends, expected["mu"]) if oracle_dir else None

    return {
        "oracle": oracle,
        "out_dir": str(out_dir),
        "config": {
            "regions": regions,
            "stores_per_region": stores_per_region,
            "skus": skus,
            "weeks": weeks,
            "start": start.isoformat(),
            "seed": seed,
        },
        "files": wr.files,
        "n_files": len(wr.files),
        "total_rows": sum(f["rows"] for f in wr.files),
        "total_bytes": sum(f["bytes"] for f in wr.files),
        "week_ends": [w.isoformat() for w in week_ends],
        "stores": [
            {
                "store_id": s.store_id,
                "zip": s.zip.code,
                "region": s.region.name,
                "format": "large" if s.large else "small",
                "shipments": "S1" if s.group == 0 else "S2",
                "demographics": "D1" if s.group == 0 else "D2",
                "weather_observed": s.zip.source,
            }
            for s in stores
        ],
        "skus": sku_ids,
    }


def main(argv: list[str] | None = None) -> int:
    """Write the raw files of a generated world to ``--out``."""
    p = argparse.ArgumentParser(prog="python -m shared.tooling.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (raw root)")
    p.add_argument("--regions", type=int, default=2)
    p.add_argument("--stores-per-region", type=int, default=3)
    p.add_argument("--skus", type=int, default=8)
    p.add_argument("--weeks", type=int, default=26)
    p.add_argument("--start", type=date.fromisoformat, default=date(2026, 6, 29), help="YYYY-MM-DD (a Monday)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--clean", action="store_true", help="first delete OUT/weather, OUT/shipments and OUT/demographics")
    p.add_argument(
        "--oracle-dir",
        type=Path,
        help="also write ORACLE_DIR/expected_demand.csv (the expected units behind each week's draw); "
        "keep it outside OUT so that it never reaches the lake's raw area",
    )
    args = p.parse_args(argv)
    if args.clean:
        for sub in ("weather", "shipments", "demographics"):
            if (args.out / sub).is_dir():
                shutil.rmtree(args.out / sub)
    summary = generate(
        args.out,
        regions=args.regions,
        stores_per_region=args.stores_per_region,
        skus=args.skus,
        weeks=args.weeks,
        start=args.start,
        seed=args.seed,
        oracle_dir=args.oracle_dir,
    )
    for f in summary["files"]:
        print(f"{f['code']:<4} {f['rows']:>8} rows {f['bytes']:>10} B  {f['path']}")
    print(f"total: {summary['n_files']} files, {summary['total_rows']} rows, {summary['total_bytes']} bytes")
    if summary["oracle"]:
        print(f"oracle: {summary['oracle']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
