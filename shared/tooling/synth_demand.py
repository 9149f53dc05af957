"""The generator's demand: events, weekly demand per store and SKU, and its files in the
shipments layouts (docs/generator.md)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np

from shared.tooling.synth_world import _EVENTS, HEADERS, Store, _Writer

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


class _Demand:
    """The demand model of one world, drawn chunk by chunk of stores (docs/generator.md,
    "Memory"): the SKUs' attributes first, then per chunk the stores' scales and their weekly
    draws; what the whole world shares (the region x SKU tastes, the event lifts) is drawn
    with the first chunk, where a one-chunk world always drew it."""

    def __init__(
        self, rng: np.random.Generator, n_sku: int, n_regions: int, week_ends: list[date], first_sunday: date
    ) -> None:
        K = n_sku
        self.rng, self.K, self.n_regions = rng, K, n_regions
        self.week_ends, self.first_sunday = week_ends, first_sunday
        self.sku_ids = [f"SKU-{v}" for v in np.sort(10000 + rng.choice(90000, size=K, replace=False)).tolist()]
        fast = rng.random(K) < 0.45
        if K >= 2:  # at least one fast and one slow mover
            fast[0], fast[-1] = True, False
        # units per large-store week: fast movers ~80, slow movers ~15 (a small store sells
        # ~45% of that); case packs hold a few days of a store's sales
        self.base = np.where(fast, rng.lognormal(np.log(80), 0.45, K), rng.lognormal(np.log(15), 0.3, K))
        self.upc = np.where(fast, rng.choice([6, 12], size=K), rng.choice([2, 4], size=K, p=[0.5, 0.5]))
        self.kind = rng.choice(3, size=K, p=[0.3, 0.2, 0.5])  # 0 warm-weather, 1 cold-weather, 2 neutral
        kind = self.kind
        self.beta_t = np.where(
            kind == 0, rng.uniform(0.15, 0.3, K), np.where(kind == 1, -rng.uniform(0.1, 0.22, K), 0.0)
        )
        self.amp = np.where(kind == 2, rng.uniform(0.1, 0.4, K), rng.uniform(0.0, 0.08, K))  # seasonal log-amplitude
        self.peak = rng.uniform(0, 365, K)
        self.trend = rng.normal(0, 0.15, K)  # log-change per year (items grow or decline)
        self.ret_p = np.where(fast, rng.uniform(0.005, 0.02, K), rng.uniform(0.01, 0.05, K))
        self.disp = np.where(fast, 30.0, 15.0)  # negative-binomial shape (gamma CV 0.18 / 0.26 on top of Poisson)
        self.reg_sku: np.ndarray | None = None
        self.lift: np.ndarray | None = None

    def _shared(self) -> None:
        """The region x SKU tastes and the event lifts, drawn once (with the first chunk)."""
        rng, K, W = self.rng, self.K, len(self.week_ends)
        self.reg_sku = rng.normal(0, 0.12, (self.n_regions, K))  # region x sku taste
        lift = np.zeros((K, W))
        for e, strength in _EVENTS.items():
            aff = np.where(rng.random(K) < 0.4, 0.0, rng.uniform(0.2, 1.0, K))
            if e == "july_4th":
                aff = np.where(self.kind == 0, np.maximum(aff, 0.6), aff)
            for wk, w in _event_weeks(self.first_sunday, W)[e]:
                lift[:, wk] += aff * strength * w
        self.lift = lift

    def chunk(self, stores: list[Store], wk_tmax: np.ndarray, wk_prcp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weekly units and their expected values (``stores`` x SKUs x weeks) of a chunk of
        consecutive stores; ``wk_tmax`` / ``wk_prcp`` are the stores' weekly weather."""
        rng, K, W = self.rng, self.K, len(self.week_ends)
        S = len(stores)
        pop = np.array([s.zip.population for s in stores], dtype=float)
        scale = np.where([s.large for s in stores], 1.0, 0.45) * (pop / 32000.0) ** 0.15
        scale *= rng.lognormal(0, 0.2, S)
        if self.reg_sku is None:
            self._shared()
        assert self.reg_sku is not None and self.lift is not None
        reg_sku = self.reg_sku[np.array([s.region.index for s in stores])]

        mid = np.array([(w - timedelta(days=3)).timetuple().tm_yday for w in self.week_ends], dtype=float)
        years = np.arange(W) * 7 / 365.25
        amp, peak = self.amp, self.peak
        log_mu = (
            np.log(self.base)[None, :, None]
            + np.log(scale)[:, None, None]
            + reg_sku[:, :, None]
            + (amp[:, None] * np.cos(2 * np.pi * (mid[None, :] - peak[:, None]) / 365.25))[None]
            + (self.trend[:, None] * years[None, :])[None]
            + np.clip(self.beta_t[None, :, None] * ((wk_tmax - 65.0) / 10.0)[:, None, :], -1.2, 1.2)
            - 0.05 * np.clip(wk_prcp, 0, 4)[:, None, :]
        )
        log_mu += self.lift[None]
        mu = np.exp(log_mu)
        disp = self.disp
        lam = mu * rng.gamma(disp[None, :, None], 1.0 / disp[None, :, None], size=(S, K, W))
        units = rng.poisson(lam).astype(np.int64)
        return units, mu


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
    """The shipments files of a chunk of consecutive stores (``units`` is theirs): a file that
    an earlier chunk of the same world wrote is appended to, so that its rows stay in store order."""
    S, K, W = units.shape
    # S1: ERP, cases (stochastic rounding of units), one file per region and ISO week;
    # every ranged store x item appears every week, zero weeks included
    erp = [s for s in stores if s.group == 0]
    if erp:
        idx = np.array([i for i, s in enumerate(stores) if s.group == 0])
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
                wr.text(f"shipments/erp/region={rname}/{iy}-W{iw:02d}.csv", "S1", HEADERS["S1"], lines, append=True)

    # S2: DSD delivery lines, units split over 1-4 distinct days Mon..Sat of the week
    dsd = [s for s in stores if s.group == 1]
    if not dsd:
        return
    idx = np.array([i for i, s in enumerate(stores) if s.group == 1])
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
        day_rows = [x[3] for x in deliveries]
        wr.text(f"shipments/deliveries/{day.isoformat()}.csv", "S2", HEADERS["S2"], day_rows, append=True)
