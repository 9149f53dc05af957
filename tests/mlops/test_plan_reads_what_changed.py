"""The weekly plan reads the manifests that changed since the last plan, not every manifest of
history (issue 22, item 4): the cache of :mod:`shared.mlops.inputs`, on both lakes."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.lake import Lake, LocalLake
from shared.mlops.inputs import CACHE, curated_files

STORES = [f"s{i:03d}" for i in range(40)]


class CountingLake(LocalLake):
    """A local lake that counts the manifests it is asked to read (instrumentation, not a fake:
    every call goes to the real lake)."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def open(self, path: str):
        if path.endswith(".manifest.json"):
            self.reads.append(path)
        return super().open(path)


def _ingested(lake: Lake, name: str, body: str, stores: list[str] | None, status: str = "ingested") -> str:
    """A curated file and its manifest, as ingestion writes them (the fields the plan reads)."""
    path = f"curated/shipments_weekly/v1/{name}.csv"
    data = f"store_id,sku,units\n{body}\n".encode()
    lake.write_bytes(path, data)
    manifest = {
        "status": status,
        "dataset": "shipments_weekly",
        "outputs": {"curated": {"path": path, "sha256": hashlib.sha256(data).hexdigest()}},
        "coverage": {"keys": {"store_id": stores}} if stores is not None else {},
    }
    lake.write_bytes(f"{path}.manifest.json", json.dumps(manifest).encode())
    return path


def _history(lake: Lake, n: int) -> list[str]:
    return [_ingested(lake, f"week{i:03d}", f"s{i % 40:03d},A,{i}", [STORES[i % 40]]) for i in range(n)]


def test_a_second_plan_reads_no_manifest_and_a_new_week_reads_one(tmp_path):
    lake = CountingLake(tmp_path)
    _history(lake, 50)
    counts: dict[str, int] = {}
    first = curated_files(lake, counts=counts)
    assert counts == {"listed": 50, "read": 50} and len(lake.reads) == 50
    lake.reads.clear()
    assert curated_files(lake, counts=counts) == first
    assert counts == {"listed": 50, "read": 0} and lake.reads == []
    new = _ingested(lake, "week050", "s001,A,9", ["s001"])
    files = curated_files(lake, counts=counts)
    assert counts == {"listed": 51, "read": 1} and lake.reads == [f"{new}.manifest.json"]
    assert [f.path for f in files] == sorted([f.path for f in first] + [new])


def test_a_re_ingested_file_is_read_again_and_a_deleted_one_is_gone(lake):
    paths = _history(lake, 5)
    before = {f.path: f for f in curated_files(lake)}
    _ingested(lake, "week002", "s077,B,1", ["s077"])  # the same name, other content and keys
    lake.delete(f"{paths[4]}.manifest.json")
    counts: dict[str, int] = {}
    after = {f.path: f for f in curated_files(lake, counts=counts)}
    assert counts == {"listed": 4, "read": 1}
    assert paths[4] not in after
    assert after[paths[2]].sha256 != before[paths[2]].sha256 and after[paths[2]].keys == frozenset({"s077"})
    assert {p: f for p, f in after.items() if p != paths[2]} == {p: before[p] for p in paths[:2] + paths[3:4]}
    # the cache holds only what is listed: a deleted manifest's entry is dropped
    cached = json.loads(lake.read_bytes(CACHE))["manifests"]
    assert sorted(cached) == sorted(f"{p}.manifest.json" for p in paths[:4])


def test_the_answer_is_the_same_as_reading_every_manifest(lake):
    _history(lake, 12)
    _ingested(lake, "unknown-keys", "s001,A,1", None)
    _ingested(lake, "failed", "s001,A,1", ["s001"], status="quarantined")
    warm = curated_files(lake)
    lake.delete(CACHE)
    cold = curated_files(lake)
    assert warm == cold
    assert len(cold) == 13 and next(f for f in cold if f.path.endswith("unknown-keys.csv")).keys is None


@pytest.mark.parametrize(
    "cache",
    [
        b'{"version": 1, "manifests": {"curated/shipments_weekly/v1/week000.csv.manifest.json"',  # truncated
        b"[1, 2]",
        b'{"version": 99, "manifests": {}}',
        b"\xff\xfe not utf-8",
    ],
    ids=["truncated", "not-an-object", "other-version", "not-utf8"],
)
def test_a_corrupt_cache_is_rebuilt_from_the_manifests(lake, cache):
    _history(lake, 6)
    truth = curated_files(lake)
    lake.write_bytes(CACHE, cache)
    counts: dict[str, int] = {}
    assert curated_files(lake, counts=counts) == truth
    assert counts["read"] == 6
    assert json.loads(lake.read_bytes(CACHE))["version"] == 1


def test_an_ill_typed_cache_entry_is_read_again_never_trusted(lake):
    paths = _history(lake, 3)
    truth = curated_files(lake)
    data = json.loads(lake.read_bytes(CACHE))
    entry = data["manifests"][f"{paths[0]}.manifest.json"]
    entry["file"]["path"] = ["not", "a", "string"]
    data["manifests"][f"{paths[1]}.manifest.json"]["file"]["keys"] = "s000"
    lake.write_bytes(CACHE, json.dumps(data).encode())
    counts: dict[str, int] = {}
    assert curated_files(lake, counts=counts) == truth
    assert counts["read"] == 2


def test_a_corrupt_manifest_is_named_every_time_not_only_when_first_read(lake):
    paths = _history(lake, 3)
    lake.write_bytes(f"{paths[1]}.manifest.json", b"{not json")
    for _ in range(2):
        skipped: dict[str, str] = {}
        files = curated_files(lake, skipped=skipped)
        assert [f.path for f in files] == [paths[0], paths[2]]
        assert list(skipped) == [f"{paths[1]}.manifest.json"] and "is not JSON" in skipped[f"{paths[1]}.manifest.json"]


def test_the_listing_gives_each_object_its_etag_and_size(lake):
    _history(lake, 3)
    listed = list(lake.list_info("curated/shipments_weekly/v1"))
    assert [i.path for i in listed] == list(lake.list("curated/shipments_weekly/v1"))
    for info in listed:
        assert info.size == len(lake.read_bytes(info.path))
    # the same object listed twice has the same ETag; a rewrite gives it another
    again = {i.path: i.etag for i in lake.list_info("curated/shipments_weekly/v1")}
    assert again == {i.path: i.etag for i in listed}
    lake.write_bytes(listed[0].path, b"other bytes")
    assert next(lake.list_info("curated/shipments_weekly/v1")).etag != listed[0].etag
    assert list(lake.list_info("curated/nothing-here")) == []
