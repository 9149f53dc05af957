"""Every group gets a forecast every week, and one unreadable production model costs its own
group only (issue 20's acceptance, through the whole main job on the local backend): a batch
is run, one production model's ``MLmodel`` is overwritten in the registry (the models are MLflow
models since issue 23), the week's batch runs again, and the broken group is served by its
fallback with the reason while every other group is served as before: by the same production
version, or by its baseline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.drivers import SMALL_WORLD, main_job


def _summary(root: Path) -> dict[str, Any]:
    latest = sorted((root / "batches").glob("week=*/summary.json"))[-1]
    return json.loads(latest.read_text())


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The main job's two weeks; then one production model overwritten and the job run again."""
    root = tmp_path_factory.mktemp("lake")
    main_job(root, *SMALL_WORLD)
    before = _summary(root)
    # a group whose production model was trained on this week's data: the rerun skips its
    # training (its inputs did not change), so only the broken model can change how it is served
    victim = next(
        g
        for g, line in sorted(before["groups"].items())
        if line["source"] == "production" and line["training"] == "retrained"
    )
    version = before["groups"][victim]["version"]
    assert (root / "models" / victim / str(version) / "MLmodel").is_file()  # an MLflow model, no pickle
    assert not (root / "models" / victim / str(version) / "model.pkl").exists()
    (root / "models" / victim / str(version) / "MLmodel").write_bytes(b"{{{ not an MLmodel: overwritten by accident")
    text = main_job(root, *SMALL_WORLD)
    yield {"root": root, "before": before, "after": _summary(root), "victim": victim, "version": version, "text": text}


def test_the_broken_group_is_served_by_its_fallback_with_the_reason(broken):
    after, victim, version = broken["after"], broken["victim"], broken["version"]
    assert after["week"] == broken["before"]["week"] and after["outcome"] == "succeeded", after
    line = after["groups"][victim]
    assert line["source"] in ("previous", "baseline") and line["rows"] > 0
    assert f"production v{version}" in line["fallback_why"] and "MLmodel cannot be read" in line["fallback_why"]
    assert line["training"] == "skipped"  # nothing retrained it: the fallback served it
    forecasts = broken["root"] / "curated" / "forecasts" / "v1" / f"week={after['week']}" / f"{victim}.csv"
    header, *rows = forecasts.read_text().splitlines()
    assert "source" in header.split(",") and rows
    assert all(f",{line['source']}," in r or r.endswith(f",{line['source']}") for r in rows)


def test_every_other_group_is_served_as_before(broken):
    before, after, victim = broken["before"], broken["after"], broken["victim"]
    assert set(after["groups"]) == set(before["groups"]) and len(after["groups"]) == 8  # 2 x 2 x 2
    for group, line in after["groups"].items():
        assert line["rows"] > 0, group  # every group, every week
        if group != victim:
            was = before["groups"][group]
            assert line["source"] == was["source"], group
            if was["source"] == "production":  # the same version (a group served by its baseline retrains)
                assert line["scored_with"] == was["scored_with"], group
    counts = after["sources"]
    assert sum(counts.values()) == 8
    assert counts["production"] == before["sources"]["production"] - 1
    assert after["fallback_share"] == round((counts["previous"] + counts["baseline"]) / 8, 4)


def test_the_batch_says_it_scored_every_group_and_from_what(broken):
    after = broken["after"]
    counts = after["sources"]
    said = f"8 scored ({counts['production']} production, {counts['previous']} previous, {counts['baseline']} baseline)"
    assert said in broken["text"]
    assert f"{broken['victim']} " in broken["text"]
