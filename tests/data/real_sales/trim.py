"""Derive ``weekly_units.csv`` (this folder's fixture) from the source file of the UCI
"Hierarchical Sales Data" set (dataset 611; Mendeley Data doi:10.17632/njdkntcpc9.1),
``hierarchical_sales_data.csv``: daily units sold of 118 pasta SKUs (4 brands) in one Italian
grocery store, 2014-01-02..2018-12-31, one ``QTY_<brand>_<n>`` and one ``PROMO_<brand>_<n>``
column per SKU, one row per day the store was open.

    python tests/data/real_sales/trim.py SOURCE.csv [OUT.csv]

What it does, and nothing else:

* keeps ``DATE`` and the ``QTY_*`` columns (the promotion flags have no place in the
  product's standard datasets); a SKU keeps its source name without ``QTY_`` (``B1_1``);
* sums each SKU's units per sales week as the lake counts them (Sunday..Saturday, named by
  its Monday: ``week_start``); a day missing from the source (27 of them, all Italian public
  holidays: the store was closed) adds 0 units;
* keeps the full weeks only: from the first Sunday (2014-01-05, week 2014-01-06) to the last
  Saturday (2018-12-29, week 2018-12-24), 260 weeks;
* writes one row per week and one column per SKU (wide, as the source: ten times smaller than
  one row per SKU and week), integer units.

The source is not in this repository and this machine has no copy of the original download:
the fixture was made from the same table as shipped in the R package data of
github.com/jtlandis/bios735-group-proj (``data/data_set_raw.rda``, read from the Mendeley
file by its ``data-raw/DATASET.r``), read with ``pyreadr`` and written back to CSV; 1,798
days x 118 SKUs, the same shape and dates as the source's documentation gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def weekly_units(daily: pd.DataFrame) -> pd.DataFrame:
    """Daily ``DATE`` x ``QTY_*`` rows -> full sales weeks x SKUs (integer units)."""
    day = pd.to_datetime(daily["DATE"])
    qty = daily.filter(regex=r"^QTY_").rename(columns=lambda c: c.removeprefix("QTY_"))
    first_sunday = day.min() + pd.Timedelta(days=(6 - day.min().day_of_week) % 7)
    last_saturday = day.max() - pd.Timedelta(days=(day.max().day_of_week - 5) % 7)
    keep = (day >= first_sunday) & (day <= last_saturday)
    week_start = day + pd.to_timedelta((7 - day.dt.day_of_week) % 7, unit="D")  # Sunday -> next Monday
    week_start = week_start.where(day.dt.day_of_week == 6, day - pd.to_timedelta(day.dt.day_of_week, unit="D"))
    out = qty[keep].groupby(week_start[keep].dt.strftime("%Y-%m-%d")).sum().round().astype(int)
    out.index.name = "week_start"
    return out


def main(argv: list[str]) -> int:
    """Read the source CSV (argv[0]) and write the fixture (argv[1], default beside this file)."""
    source = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("weekly_units.csv")
    weekly_units(pd.read_csv(source)).to_csv(out, lineterminator="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
