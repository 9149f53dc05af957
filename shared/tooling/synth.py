"""Seeded, reproducible generator of RAW vendor files for ForecastOps.

The design notes: docs/generator.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from shared.tooling.synth_demand import _Demand, _write_shipments
from shared.tooling.synth_weather import _simulate_weather, _write_weather
from shared.tooling.synth_world import (
    FORECAST_DAYS,
    HEADERS,
    Store,
    _build_world,
    _f1,
    _region_list,
    _spawn,
    _Writer,
)


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
    oracle_dir: Path,
    stores: list[Store],
    sku_ids: list[str],
    week_ends: list[date],
    mu: np.ndarray,
    append: bool = False,
) -> str:
    """The oracle: ``expected_demand.csv`` with ``store_id,sku,week_start,expected_units``, the
    mean of the distribution each week's units were drawn from (before the demand noise, the
    case rounding and the split into deliveries, all unbiased), one row per store x SKU x week,
    ``week_start`` the Monday of the Sunday..Saturday week as in the curated shipments.
    No forecast can know more; its error is the noise floor. ``mu`` is ``stores`` x SKUs x
    weeks; with ``append``, their rows go at the end of the file (a later chunk of stores)."""
    path = Path(oracle_dir) / "expected_demand.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    mondays = [(w - timedelta(days=5)).isoformat() for w in week_ends]
    lines = [] if append else ["store_id,sku,week_start,expected_units"]
    for s, store in enumerate(stores):
        for k, sku in enumerate(sku_ids):
            values = _f1(mu[s, k], 4)
            lines.extend(f"{store.store_id},{sku},{mondays[w]},{values[w]}" for w in range(len(week_ends)))
    with open(path, "ab" if append else "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return str(path)


#: the most store x SKU x weeks the generator holds in memory at once: the demand is drawn
#: and written a chunk of consecutive stores at a time, so that its memory is a chunk's,
#: whatever the world's size. Part of the world's definition, as the seed is: a world of at
#: most this many is drawn in one chunk (every world the tests, the samples and make run
#: generate), a larger one chunk after chunk from the same streams.
CHUNK_STORE_SKU_WEEKS = 250_000


def store_chunks(n_stores: int, skus: int, weeks: int) -> list[range]:
    """The chunks of consecutive stores (by index) the demand is drawn and written in."""
    per = max(1, CHUNK_STORE_SKU_WEEKS // (skus * weeks))
    return [range(a, min(a + per, n_stores)) for a in range(0, n_stores, per)]


# --------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------


#: the phases of :func:`generate`, in order, as its ``progress`` callback names them
PHASES = ("simulating weather", "writing weather", "simulating demand, writing shipments", "writing demographics")


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
    # the weekly weather per zip (a store reads its zip's): the daily truth is freed once written
    wk_tmax = truth["tmax"][:, :n_obs].reshape(len(zips), weeks, 7).mean(axis=2)
    wk_prcp = truth["prcp"][:, :n_obs].reshape(len(zips), weeks, 7).sum(axis=2)
    wr = _Writer(out_dir)
    step(PHASES[1])
    _write_weather(wr, rng_wxout, zips, obs_days, truth, week_ends, all_days)
    del truth

    step(PHASES[2])
    demand = _Demand(rng_dem, skus, len(region_list), week_ends, first_sunday)
    sku_ids = demand.sku_ids
    oracle = None
    for n, chunk in enumerate(store_chunks(len(stores), skus, weeks)):
        part = stores[chunk.start : chunk.stop]
        zpos = np.array([s.zip.index for s in part])
        units, mu = demand.chunk(part, wk_tmax[zpos], wk_prcp[zpos])
        _write_shipments(wr, rng_ship, part, sku_ids, units, demand.upc.astype(np.int64), demand.ret_p, week_ends)
        if oracle_dir:
            oracle = write_oracle(Path(oracle_dir), part, sku_ids, week_ends, mu, append=n > 0)
        del units, mu
    step(PHASES[3])
    _write_demographics(wr, stores)

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
