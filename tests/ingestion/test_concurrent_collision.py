"""Two raw files that map to the same outputs (``x.csv`` and ``x.csv.gz``), ingested at the same
moment: exactly one is ingested, the other is an ``output_collision`` with its record, and the
outputs left are the winner's own, byte for byte (issue 24, item 2). Threads and processes on
the local lake, threads on Azurite; many tries, each starting both ingests behind one barrier.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shared.ingestion.layout import outputs_for
from shared.ingestion.service import claim_outputs, ingest
from shared.lake import Lake, LocalLake
from tests.drivers import US_OBS_HEADER, lines, put, read_json

TRIES = 10
PLAIN, GZIP = "x.csv", "x.csv.gz"
#: enough rows that one ingest lasts far longer than the two take to start
ROWS = 3000


def _content(name: str) -> str:
    """Each file's own rows: the two conversions differ in every row."""
    high = 50 if name == PLAIN else 60
    return lines(US_OBS_HEADER, *(f"{10000 + i % 1000},01/{1 + i // 1000:02d}/2026,{high},32,0," for i in range(ROWS)))


def _raw(folder: str, name: str) -> str:
    return f"raw/weather/{folder}/{name}"


def _put_both(lake: Lake, folder: str) -> list[str]:
    put(lake, _raw(folder, PLAIN), _content(PLAIN))
    put(lake, _raw(folder, GZIP), _content(GZIP), gz=True)
    return [_raw(folder, PLAIN), _raw(folder, GZIP)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each raw file's curated CSV when it is ingested alone."""
    found = {}
    for name in (PLAIN, GZIP):
        lake = LocalLake(tmp_path_factory.mktemp("alone"))
        put(lake, _raw("r", name), _content(name), gz=name == GZIP)
        assert ingest(lake, _raw("r", name))["status"] == "ingested"
        found[name] = lake.read_bytes(outputs_for(_raw("r", name)).curated)
    assert found[PLAIN] != found[GZIP]
    return found


def _check_one_round(lake: Lake, paths: list[str], results: list[dict[str, Any]], converted: dict[str, bytes]) -> None:
    by_path = {r["raw"]["path"]: r for r in results}
    assert sorted(r["status"] for r in results) == ["ingested", "quarantined"], [r.get("error") for r in results]
    winner = next(p for p in paths if by_path[p]["status"] == "ingested")
    loser = next(p for p in paths if p != winner)
    out = outputs_for(winner)
    error = by_path[loser]["error"]
    assert error["reason"] == "output_collision" and error["details"]["other"] == winner
    record = outputs_for(loser).collision_error
    assert by_path[loser]["error_record"] == record and read_json(lake, record)["raw"]["path"] == loser
    manifest = read_json(lake, out.manifest)
    assert manifest["raw"]["path"] == winner and manifest == by_path[winner]
    # the output left is the winner's own conversion, byte for byte, and its manifest says so
    assert lake.read_bytes(out.curated) == converted[winner.rsplit("/", 1)[-1]]
    assert read_json(lake, out.claim)["raw"] == winner
    assert not lake.exists(out.error) and not lake.exists(outputs_for(winner).collision_error)


def _race_threads(lake: Lake, paths: list[str]) -> list[dict[str, Any]]:
    barrier = threading.Barrier(len(paths))

    def one(path: str) -> dict[str, Any]:
        barrier.wait(timeout=60)
        return ingest(lake, path)

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(one, paths))


@pytest.mark.parametrize("lake", ["local", "blob"], indirect=True)
def test_two_raw_files_racing_in_threads_for_one_output_end_one_ingested_one_collision(lake, converted):
    for i in range(TRIES):
        paths = _put_both(lake, f"t{i}")
        _check_one_round(lake, paths, _race_threads(lake, paths), converted)


_barrier: Any = None


def _set_barrier(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _ingest_in_process(root: str, path: str) -> dict[str, Any]:
    _barrier.wait(timeout=60)
    return ingest(LocalLake(root), path)


def test_two_raw_files_racing_in_processes_for_one_output_end_one_ingested_one_collision(tmp_path, converted):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=_set_barrier, initargs=(barrier,)) as pool:
        for i in range(TRIES):
            root = tmp_path / f"lake{i}"
            lake = LocalLake(root)
            paths = _put_both(lake, "p")
            results = list(pool.map(_ingest_in_process, [str(root)] * 2, paths))
            _check_one_round(lake, paths, results, converted)


def test_a_file_whose_rival_was_deleted_takes_the_outputs_over_and_its_collision_record_goes(lake, converted):
    plain, gz = _put_both(lake, "d")
    assert ingest(lake, plain)["status"] == "ingested"
    assert ingest(lake, gz)["error"]["reason"] == "output_collision"
    lake.delete(plain)  # or renamed away: the claim's raw file is gone
    m = ingest(lake, gz)
    assert m["status"] == "ingested" and m["raw"]["path"] == gz
    out = outputs_for(gz)
    assert lake.read_bytes(out.curated) == converted[GZIP] and read_json(lake, out.claim)["raw"] == gz
    assert not lake.exists(out.collision_error)
    # the deleted file, sent again, now finds the outputs held
    put(lake, plain, _content(PLAIN))
    assert ingest(lake, plain)["error"]["reason"] == "output_collision"
    assert lake.read_bytes(out.curated) == converted[GZIP]


def test_a_claim_left_by_a_crashed_run_of_the_same_file_never_blocks_it(lake, converted):
    plain = _raw("c", PLAIN)
    put(lake, plain, _content(PLAIN))
    out = outputs_for(plain)
    assert lake.create(out.claim, b'{"raw": "%s", "invocation_id": "died"}' % plain.encode())
    assert ingest(lake, plain)["status"] == "ingested"
    assert lake.read_bytes(out.curated) == converted[PLAIN]
    # and a new version of the same file still replaces its own outputs
    put(lake, plain, lines(US_OBS_HEADER, "2134,03/01/2026,50,32,0,"))
    m = ingest(lake, plain)
    assert m["status"] == "ingested" and m["rows"]["read"] == 1


def test_a_call_that_fails_gives_its_new_claim_back(local_lake, monkeypatch):
    from shared.ingestion import service

    plain = _raw("f", PLAIN)
    put(local_lake, plain, _content(PLAIN))

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker died")

    monkeypatch.setattr(service, "write_outputs", dies)
    with pytest.raises(RuntimeError, match="worker died"):
        ingest(local_lake, plain)
    assert not local_lake.exists(outputs_for(plain).claim)


def test_outputs_written_before_claims_existed_stay_with_the_raw_file_they_name(lake):
    plain, gz = _put_both(lake, "l")
    ingest(lake, plain)
    lake.delete(outputs_for(plain).claim)  # a lake ingested before claims
    m = ingest(lake, gz)
    assert m["error"]["reason"] == "output_collision" and m["error"]["details"]["other"] == plain
    assert read_json(lake, outputs_for(plain).claim)["raw"] == plain
    assert read_json(lake, outputs_for(plain).manifest)["raw"]["path"] == plain


def test_contenders_for_a_claim_whose_file_is_gone_hand_it_to_exactly_one(lake):
    """Three raw files race to take over the claim of a fourth that was deleted: one gets it,
    the others find it held by that one (never two owners, never a claim removed under one)."""
    names = ["x", "x.gz", "x.csv", "x.csv.gz"]
    for i in range(TRIES):
        paths = [_raw(f"h{i}", n) for n in names]
        for p in paths[1:]:
            put(lake, p, "a")
        out = outputs_for(paths[1])
        assert lake.create(out.claim, b'{"raw": "%s"}' % paths[0].encode())  # its file never was, or is gone
        barrier = threading.Barrier(3)

        def one(path: str, barrier: threading.Barrier = barrier) -> tuple[str | None, bool]:
            barrier.wait(timeout=60)
            return claim_outputs(lake, outputs_for(path), "t")

        with ThreadPoolExecutor(3) as pool:
            answers = dict(zip(paths[1:], pool.map(one, paths[1:]), strict=True))
        winners = [p for p, (holder, _) in answers.items() if holder is None]
        assert len(winners) == 1 and answers[winners[0]] == (None, True)
        assert all(holder == winners[0] for p, (holder, _) in answers.items() if p != winners[0])
        assert read_json(lake, out.claim)["raw"] == winners[0]


def test_delete_if_removes_only_the_version_it_names(lake):
    path = "curated/weather_daily/v1/claimed.claim.json"
    assert lake.create(path, b"one")
    first = lake.stat(path).etag
    assert not lake.delete_if(path, '"not-it"') and lake.read_bytes(path) == b"one"
    assert lake.delete_if(path, first) and not lake.exists(path)
    assert not lake.delete_if(path, first)
    assert lake.create(path, b"two")
    assert not lake.delete_if(path, first) and lake.read_bytes(path) == b"two"  # a new claim stays


def test_the_local_lake_leaves_no_lock_file_behind(tmp_path: Path):
    lake = LocalLake(tmp_path)
    lake.create("curated/a/b.json", b"x")
    assert lake.delete_if("curated/a/b.json", lake.stat("curated/a/b.json").etag)
    assert list((tmp_path / "curated" / "a").iterdir()) == []
