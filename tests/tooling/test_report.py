"""The main job's report: what its figures say (sorted by error, the gate, region x format, the
baseline in the healthy column, the manifests' sums, the index) and that it renders in a real
headless browser with no console error and charts of visible size."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shared import clock
from shared.aml.catalog import load_catalog
from shared.lake import LocalLake
from shared.tooling import report
from shared.tooling.cli import main
from shared.tooling.report import charts
from shared.tooling.report.data import data_quality, region_format
from shared.tooling.report.series import group_series
from tests.drivers import SMALL_WORLD, main_job

GATES = load_catalog()["forecast"].gates
NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


# a small real batch, run once for the module ---------------------------------------------------
@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """(lake folder, the main job's output, run id) of a generated 2 x 2 x 4 x 40 batch."""
    root = tmp_path_factory.mktemp("lake")
    text = main_job(root, *SMALL_WORLD)
    run_id = re.search(r"^report: .*/forecast-(\S+)\.html$", text, re.M).group(1)
    yield root, text, run_id


def test_the_report_shows_the_weekly_batchs_decision_for_every_model(batch):
    page = _page(batch)
    rows = _grids(page).grids["decisions"]
    assert rows[0] == ["model", "training", "why", "decision", "why", "serving", "source", "why"]
    models = [r[0] for r in rows[1:]]
    assert len(models) == 8 and models == sorted(models)
    per_source: dict[str, int] = {}
    for _, training, why, decision, decision_why, serving, source, fallback_why in rows[1:]:
        assert training in ("retrained", "skipped") and why
        assert decision in ("promoted", "kept") and decision_why
        # every group is served: by a registry version, or by its baseline, which says why
        assert source in ("production", "previous", "baseline")
        per_source[source] = per_source.get(source, 0) + 1
        if source == "baseline":
            assert serving and not re.fullmatch(r"v\d+", serving) and fallback_why
        else:
            assert re.fullmatch(r"v\d+", serving)
        if source == "production":
            assert fallback_why == ""
    assert "The weekly batch: week of" in page and "curated/forecasts/v1/week=" in page
    # the counts per source, as the batch's summary has them
    told = ", ".join(f"{per_source.get(s, 0)} {s}" for s in ("production", "previous", "baseline"))
    assert told in page and "served by fallback" in page


def _page(batch: tuple[Path, str, str]) -> str:
    root, _, run_id = batch
    return (root / "reports" / f"forecast-{run_id}.html").read_text()


class _Grids(HTMLParser):
    """The text of every ``role=table`` grid's rows, by its aria-label; and the model table's."""

    def __init__(self) -> None:
        super().__init__()
        self.grids: dict[str, list[list[str]]] = {}
        self.table: list[list[str]] = []
        self._grid: str | None = None
        self._depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("role") == "table":
            self._grid, self._depth = a.get("aria-label") or "", 0
            self.grids[self._grid] = []
        elif tag == "div" and self._grid is not None:
            self._depth += 1
            if a.get("role") == "row":
                self.grids[self._grid].append([])
            elif a.get("role") in ("cell", "rowheader", "columnheader"):
                self._cell = []
        elif tag == "tr":
            self.table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None and tag in ("div", "td", "th"):
            target = self.grids[self._grid][-1] if tag == "div" and self._grid is not None else self.table[-1]
            target.append("".join(self._cell).strip())
            self._cell = None
        if tag == "div" and self._grid is not None:
            if self._depth == 0:
                self._grid = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _grids(page: str) -> _Grids:
    g = _Grids()
    g.feed(page)
    return g


def _row(model: str, mape: float | None, baseline: float | None, n: int = 10) -> dict[str, str]:
    return {
        "model": model,
        "mape": "" if mape is None else str(mape),
        "baseline_mape": "" if baseline is None else str(baseline),
        "trained_at": str(NOW.timestamp() - 86400),
        "n_actual_pos": str(n),
    }


# what the figures say --------------------------------------------------------------------------
def test_healthy_means_the_gates_and_better_than_the_baseline_and_says_which_failed():
    rows = report.models(
        [
            _row("west.large.fast", 0.30, 0.40),
            _row("west.large.slow", 0.30, 0.25),
            _row("west.small.fast", 0.50, 0.60),
            _row("overall", 0.35, 0.40),
        ],
        NOW,
        GATES,
    )
    by = {r["model"]: r for r in rows}
    assert set(by) == {"west.large.fast", "west.large.slow", "west.small.fast"}
    assert by["west.large.fast"]["healthy"] and by["west.large.fast"]["problems"] == []
    assert not by["west.large.slow"]["healthy"]
    assert by["west.large.slow"]["problems"] == ["not better than the baseline by more than 0.02 (0.300 vs 0.250)"]
    assert by["west.small.fast"]["problems"] == ["MAPE 0.50 > 0.45"]
    text = report.verdict(rows, None, GATES)
    assert text.startswith("1 of 3 models healthy (MAPE <= 0.45, trained within 60 days, better than the historical")
    assert "2 of 3 beat the historical-average baseline by more than 0.02" in text


def test_healthy_is_the_health_policy_s_rule_the_gates_and_beating_the_baseline_by_its_margin():
    from shared.health import HealthPolicy, policy

    rows = [_row("west.large.fast", 0.30, 0.33), _row("west.large.slow", 0.30, 0.40)]
    # the file's rule (margin 0.02): both beat their baseline by more than it
    assert [r["healthy"] for r in report.models(rows, NOW, GATES)] == [True, True]
    assert report.models(rows, NOW, GATES) == report.models(rows, NOW, GATES, policy())
    # a policy whose baseline margin is 0.05: 0.30 against 0.33 no longer beats it
    margin = policy().model_dump()
    margin["baseline"]["margin"] = 0.05
    stricter = HealthPolicy.model_validate(margin)
    judged = report.models(rows, NOW, GATES, stricter)
    assert [r["healthy"] for r in judged] == [False, True]
    assert judged[0]["problems"] == ["not better than the baseline by more than 0.05 (0.300 vs 0.330)"]
    assert "1 of 2 beat the historical-average baseline by more than 0.05" in report.verdict(
        judged, None, GATES, stricter
    )


def test_the_error_chart_sorts_models_by_error_and_draws_the_gate():
    rows = report.models(
        [_row("b.large.fast", 0.5, 0.6), _row("a.large.fast", 0.2, 0.3), _row("c.large.fast", 0.35, 0.3)], NOW, GATES
    )
    svg = charts.error_chart(rows, GATES.max_mape)
    texts = re.findall(r"<text[^>]*>([^<]+)</text>", svg)
    names = [t for t in texts if t.endswith(".large.fast")]
    assert names == ["a.large.fast", "c.large.fast", "b.large.fast"]  # lowest MAPE first
    assert "gate 0.45" in texts and "MAPE (mean over the backtest origins)" in texts
    assert svg.startswith("<svg") and 'width="' in svg


def test_the_region_by_format_table_pools_each_cells_models():
    rows = report.models(
        [
            _row("east.large.fast", 0.2, 0.5, n=30),
            _row("east.large.slow", 0.6, 0.7, n=10),
            _row("east.small.fast", 0.4, 0.5),
            _row("west.small.slow", 0.5, 0.4),
        ],
        NOW,
        GATES,
    )
    regions, formats, cells = region_format(rows)
    assert regions == ["east", "west"] and formats == ["large", "small"]
    assert cells[("east", "large")] == {"mape": pytest.approx((0.2 * 30 + 0.6 * 10) / 40), "healthy": 1, "n": 2}
    assert cells[("west", "small")] == {"mape": pytest.approx(0.5), "healthy": 0, "n": 1}
    assert ("west", "large") not in cells


def test_forecast_against_actual_sums_a_groups_series_with_a_band_from_the_earlier_origins():
    def r(group, series, week, origin, role, forecast, actual):
        return {"group": group, "series": series, "week_start": week, "origin": origin, "role": role}, {
            "forecast": str(forecast),
            "actual": str(actual),
        }

    backtest = [
        a | b
        for a, b in (
            r("g", "s1", "2026-01-05", "2026-01-05", "backtest", 10, 12),
            r("g", "s2", "2026-01-05", "2026-01-05", "backtest", 10, 8),
            r("g", "s1", "2026-01-12", "2026-01-12", "backtest", 10, 15),
            r("g", "s2", "2026-01-12", "2026-01-12", "backtest", 10, 15),
            r("h", "s3", "2026-01-12", "2026-01-12", "backtest", 99, 99),
            r("g", "s1", "2026-01-19", "2026-01-19", "backtest", 5, 5),
        )
    ]
    forecasts = [
        {"group": "g", "series": "s1", "week_start": "2026-01-19", "split": "holdout", "forecast": "5", "actual": "5"},
        {"group": "g", "series": "s1", "week_start": "2026-01-26", "split": "future", "forecast": "6", "actual": ""},
    ]
    s = group_series(backtest, forecasts, "g", "2026-01-19")
    assert s.actual == {"2026-01-05": 20, "2026-01-12": 30, "2026-01-19": 5}
    assert s.forecast == {"2026-01-19": 5, "2026-01-26": 6}
    # lead 0 at the earlier origins: actual / forecast 20/20 and 30/20
    assert s.low == {"2026-01-19": 5, "2026-01-26": 6} and s.high == {"2026-01-19": 7.5, "2026-01-26": 9}
    assert set(s.origins) == {"2026-01-05", "2026-01-12"}  # the holdout's own origin is drawn as the forecast


def test_the_summary_prints_wape_bias_the_seasonal_naive_the_oracle_and_the_targets(batch):
    _, text, _ = batch
    line = re.search(r"^overall WAPE .+$", text, re.M).group(0)
    assert re.match(
        r"overall WAPE 0\.\d{3}, bias \d\.\d{3}; seasonal naive MAPE \d\.\d{3}, WAPE \d\.\d{3}; "
        r"oracle MAPE \d\.\d{3}, WAPE \d\.\d{3}; targets: \d of 5 met",
        line,
    ), line
    verdict = text.index("models healthy")
    assert verdict < text.index(line) < text.index("report: ")


def test_the_report_shows_the_batch_region_by_format_and_every_model_with_its_baseline(batch):
    root, _, run_id = batch
    page = _page(batch)
    g = _grids(page)
    metrics = report.read_csv((root / "runs" / run_id / "outputs/evaluate/metrics/metrics.csv").read_bytes())
    rows = report.models(metrics, NOW, GATES)
    regions, formats, cells = region_format(rows)
    grid = g.grids["MAPE per region and store format"]
    assert grid[0] == ["region", *formats] and [r[0] for r in grid[1:]] == regions
    for line in grid[1:]:
        for fmt, text in zip(formats, line[1:], strict=True):
            c = cells[(line[0], fmt)]
            assert text == f"{c['mape']:.3f} ({c['healthy']}/{c['n']} healthy)"
    assert len(g.table) == len(rows) + 1 and g.table[0][-1] == "healthy"
    for line in g.table[1:]:
        assert line[-1] == "yes" or line[-1].startswith("no: "), line
    assert all(
        "baseline" in line[-1] for line in g.table[1:] if float(line[1]) >= float(line[4])
    )  # no better than the historical average: said so
    assert f"runs/{run_id}/outputs/score/scores/forecasts.csv" in page and "Training window" in page
    assert (root / "reports" / f"../runs/{run_id}/outputs/score/scores/forecasts.csv").is_file()  # the link resolves


def test_the_data_quality_section_is_the_sum_of_the_manifests(batch, tmp_path):
    root, _, run_id = batch
    shutil.copytree(root, tmp_path / "lake")
    lake_dir = tmp_path / "lake"
    (lake_dir / "raw" / "weather" / "broken.csv").write_text("nothing,we,know\n1,2,3\n")
    assert main(["--lake", str(lake_dir), "ingest"], out=io.StringIO()) == 3  # one file quarantined
    lake = LocalLake(lake_dir)
    page = lake.read_bytes(report.write_report(lake, report.load(lake, run_id), GATES, NOW)).decode()
    g = _grids(page)
    sums: dict[tuple[str, str], list[int]] = {}
    for path in lake_dir.joinpath("curated").rglob("*.manifest.json"):
        m = json.loads(path.read_text())
        s = sums.setdefault((m["dataset"], m["format"]["id"]), [0, 0, 0, 0])
        s[0] += 1
        for i, k in enumerate(("read", "written", "rejected")):
            s[i + 1] += m["rows"][k]
    shown = {(r[0], r[1]): [int(v) for v in r[2:]] for r in g.grids["rows per source"][1:]}
    assert shown == sums and len(sums) >= 5
    assert g.grids["quarantined files"][1:] == [["weather_daily", "no_matching_format", "1", "raw/weather/broken.csv"]]
    q = data_quality([], [json.loads(p.read_text()) for p in lake_dir.joinpath("quarantine").rglob("*.error.json")])
    assert q.quarantined == {("weather_daily", "no_matching_format"): ["raw/weather/broken.csv"]}


def test_the_index_lists_every_report_newest_first(batch, tmp_path):
    root, _, run_id = batch
    shutil.copytree(root, tmp_path / "lake")
    lake = LocalLake(tmp_path / "lake")
    later = "forecast-later"
    shutil.copytree(tmp_path / "lake" / "runs" / run_id, tmp_path / "lake" / "runs" / later)
    # the batch's own report was written at the clock's time: this one a week after it
    report.write_report(lake, report.load(lake, later), GATES, clock.now() + dt.timedelta(days=7))
    lake.write_bytes("reports/forecast-before-figures.html", b"<!doctype html><title>old</title>")
    index = lake.read_bytes(report.write_index(lake, clock.now() + dt.timedelta(days=8))).decode()
    pages = re.findall(r'<a href="(forecast-[^"]+\.html)">', index)
    assert pages == [f"forecast-{later}.html", f"forecast-{run_id}.html", "forecast-before-figures.html"]
    table = _grids(index).table
    assert table[1][2] == table[2][2] and re.fullmatch(r"\d+ of 8", table[1][4])  # MAPE and healthy per run
    assert index.count("<svg") == 1  # the trend over runs
    assert 'href="index.html"' in lake.read_bytes(f"reports/forecast-{later}.html").decode()


# in a real browser -----------------------------------------------------------------------------
def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs this test")
    return path


class DevTools:
    """The smallest DevTools-protocol client: commands by id, events kept in order."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            assert time.monotonic() < end, f"no {event} in {timeout} s"
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "profile"
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--window-size=1200,900",
        "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < end, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        tools = DevTools(target["webSocketDebuggerUrl"])
        try:
            yield tools
        finally:
            tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _errors(events: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(params.get("args"))
        elif method == "Runtime.exceptionThrown":
            out.append(params.get("exceptionDetails"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(params["entry"])
    return out


LAYOUT = """JSON.stringify({
  svgs: [...document.querySelectorAll('body > figure > svg')].map(s => {
    const r = s.getBoundingClientRect(); return [r.width, r.height]; }),
  rows: document.querySelectorAll('table tr').length,
  gridRows: [...document.querySelectorAll('[role=table]')].map(t => t.querySelectorAll('[role=row]').length),
  title: document.title
})"""


def test_the_report_renders_in_headless_chromium_without_errors_and_with_visible_charts(batch, browser, tmp_path):
    root, _, run_id = batch
    url = (root / "reports" / f"forecast-{run_id}.html").as_uri()
    for domain in ("Runtime", "Log", "Network", "Page"):
        browser.send(f"{domain}.enable")
    browser.send("Page.navigate", url=url)
    browser.wait_for("Page.loadEventFired")
    layout = json.loads(browser.send("Runtime.evaluate", expression=LAYOUT, returnByValue=True)["result"]["value"])
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
    index = (root / "reports" / "index.html").as_uri()
    browser.send("Page.navigate", url=index)
    browser.wait_for("Page.frameStoppedLoading")

    assert _errors(browser.events) == []
    requested = [
        e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested == [url, index]  # one self-contained file each: nothing else fetched
    assert layout["title"] == f"Demand forecast: run {run_id}"
    assert len(layout["svgs"]) == 3 and all(w > 100 and h > 100 for w, h in layout["svgs"]), layout
    assert layout["rows"] == 8 + 1  # the model table: a header and 8 models
    # the batch's decisions (a header and 8 models), then region x format (2 regions)
    assert layout["gridRows"][:2] == [1 + 8, 1 + 2] and len(layout["gridRows"]) >= 3
    assert (tmp_path / "report.png").stat().st_size > 10_000
