"""The generator's weather: daily truth per zip, and its files in the weather layouts
(docs/generator.md)."""

from __future__ import annotations

from datetime import date

import numpy as np

from shared.tooling.synth_world import FORECAST_DAYS, HEADERS, Zip, _f1, _f_to_c, _Writer


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
