"""The lake's contract, the same for the local folder and for Blob Storage (Azurite)."""

from __future__ import annotations

import pytest

from shared.lake import LocalLake, NotFoundError, check_path, make_lake
from shared.settings import Settings


def test_write_read_stat_list_delete(lake):
    lake.write_bytes("raw/weather/a/x.csv", b"hello")
    lake.write_bytes("raw/weather/b.csv", b"world!")
    assert lake.read_bytes("raw/weather/a/x.csv") == b"hello"
    info = lake.stat("raw/weather/b.csv")
    assert info.size == 6 and info.etag
    assert list(lake.list("raw/weather")) == ["raw/weather/a/x.csv", "raw/weather/b.csv"]
    assert list(lake.list("curated")) == []
    lake.delete("raw/weather/b.csv")
    lake.delete("raw/weather/b.csv")  # deleting what is gone is fine
    assert not lake.exists("raw/weather/b.csv")
    with pytest.raises(NotFoundError):
        lake.stat("raw/weather/b.csv")
    with pytest.raises(NotFoundError):
        lake.read_bytes("raw/nothing/here.csv")


def test_a_new_version_gets_a_new_etag(lake):
    lake.write_bytes("raw/x/y.csv", b"1")
    first = lake.stat("raw/x/y.csv").etag
    lake.write_bytes("raw/x/y.csv", b"22")
    assert lake.stat("raw/x/y.csv").etag != first


def test_nothing_is_visible_until_the_writer_closes_and_a_failed_write_leaves_nothing(lake):
    with lake.writer("curated/d/v1/x.csv") as sink:
        for _ in range(10):
            sink.write(b"x" * 100_000)  # several staged blocks on Azurite (256 KiB chunks)
        assert not lake.exists("curated/d/v1/x.csv")
    assert lake.stat("curated/d/v1/x.csv").size == 1_000_000
    with pytest.raises(RuntimeError), lake.writer("curated/d/v1/y.csv") as sink:
        sink.write(b"partial")
        raise RuntimeError("crash")
    assert not lake.exists("curated/d/v1/y.csv")
    assert list(lake.list("curated")) == ["curated/d/v1/x.csv"]


def test_reads_stream_in_chunks(lake):
    data = bytes(range(256)) * 8000  # ~2 MB: several chunks on either lake
    lake.write_bytes("raw/x/big.bin", data)
    with lake.open("raw/x/big.bin") as (stream, info):
        parts = []
        while chunk := stream.read(100_000):
            parts.append(chunk)
    assert b"".join(parts) == data and info.size == len(data) and len(parts) > 10


@pytest.mark.parametrize("bad", ["", "/raw/x.csv", "raw/../x.csv", "raw//x.csv", "raw\\x.csv", "raw"])
def test_paths_that_could_escape_or_mean_nothing_are_refused(bad):
    with pytest.raises(ValueError):
        check_path(bad)


def test_the_settings_choose_the_lake(tmp_path, azurite):
    assert isinstance(make_lake(Settings(lake_backend="local", lake_root=tmp_path)), LocalLake)
    blob = make_lake(Settings(lake_backend="blob", lake_storage=azurite.connection_string))
    assert blob.describe("raw/x.csv").endswith("/raw/x.csv")
    with pytest.raises(ValueError, match="LAKE_STORAGE"):
        make_lake(Settings(lake_backend="blob"))
    assert "127.0.0.1:10000" in make_lake(
        Settings(lake_backend="blob", lake_storage="UseDevelopmentStorage=true")
    ).describe("raw/x")


def test_a_local_file_changed_in_place_with_the_same_size_and_mtime_gets_a_new_etag(local_lake):
    """What ``cp -p``, ``rsync -a`` and unzip do: new bytes, the old size and mtime."""
    import os
    import time

    local_lake.write_bytes("raw/x/y.csv", b"version 1")
    file = local_lake.root / "raw/x/y.csv"
    before = file.stat()
    first = local_lake.stat("raw/x/y.csv").etag
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(file, "r+b") as f:  # in place: the same inode
        f.write(b"version 2")
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert local_lake.stat("raw/x/y.csv").etag != first
    # replaced by a rename, then given the old mtime back
    time.sleep(0.05)
    tmp = local_lake.root / "raw/x/tmp"
    tmp.write_bytes(b"version 3")
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = local_lake.stat("raw/x/y.csv").etag
    os.replace(tmp, file)
    assert local_lake.stat("raw/x/y.csv").etag not in (first, second)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("raw/weather/a\x00b.csv", "control character"),
        ("raw/weather/a\nb.csv", "control character"),
        ("raw/weather/" + "a" * 256 + ".csv", "at most 255"),
        ("raw/weather/" + "/".join(["abcdefghij"] * 100) + ".csv", "at most 1024"),
    ],
    ids=["nul", "newline", "long-segment", "long-path"],
)
def test_paths_no_storage_accepts_are_refused_before_any_storage_call(bad, words):
    with pytest.raises(ValueError, match=words):
        check_path(bad)


def test_children_names_one_level_without_listing_deeper(lake):
    for path in (
        "batches/index/shipments_weekly/2026-12-14/a.json",
        "batches/index/shipments_weekly/2026-12-21/b.json",
        "batches/index/shipments_weekly/2026-12-21/c.json",
        "batches/index/shipments_weekly/old.json",
    ):
        lake.write_bytes(path, b"{}")
    assert lake.children("batches/index/shipments_weekly") == ["2026-12-14", "2026-12-21", "old.json"]
    assert lake.children("batches/index/shipments_weekly/2026-12-21") == ["b.json", "c.json"]
    assert lake.children("batches/index") == ["shipments_weekly"]
    assert lake.children("batches/index/nothing") == []
    assert lake.children("nocontainer/x") == []


def test_a_symlink_out_of_the_local_lake_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("root:x:0:0:root:/root:/bin/bash\n")
    lake = LocalLake(tmp_path / "lake")
    lake.write_bytes("raw/weather/ok.csv", b"a\n1\n")
    (tmp_path / "lake" / "raw" / "weather" / "passwd.csv").symlink_to(outside / "secret.csv")
    (tmp_path / "lake" / "raw" / "weather" / "out").symlink_to(outside, target_is_directory=True)
    for path in ("raw/weather/passwd.csv", "raw/weather/out/secret.csv"):
        assert not lake.exists(path)
        with pytest.raises(NotFoundError):
            lake.read_bytes(path)
        with pytest.raises(ValueError, match="outside the lake"):
            lake.write_bytes(path, b"x")
        with pytest.raises(ValueError, match="outside the lake"):
            lake.delete(path)
    with pytest.raises(ValueError, match="outside the lake"):
        lake.write_bytes("raw/weather/out/new.csv", b"x")
    assert list(lake.list("raw/weather")) == ["raw/weather/ok.csv"]
    assert lake.children("raw/weather") == ["ok.csv"]
    assert (outside / "secret.csv").read_text().startswith("root:") and sorted(p.name for p in outside.iterdir()) == [
        "secret.csv"
    ]


def test_a_symlink_that_stays_inside_the_local_lake_reads(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    lake.write_bytes("raw/weather/ok.csv", b"a\n1\n")
    (tmp_path / "lake" / "raw" / "weather" / "alias.csv").symlink_to(tmp_path / "lake" / "raw" / "weather" / "ok.csv")
    assert lake.read_bytes("raw/weather/alias.csv") == b"a\n1\n"


@pytest.mark.parametrize("bad", ["raw/weather/\ud800.csv", "raw/\udfff/x.csv"])
def test_a_lone_surrogate_is_no_lake_path(bad, local_lake):
    with pytest.raises(ValueError, match="surrogate"):
        check_path(bad)
    with pytest.raises(ValueError, match="surrogate"):
        local_lake.stat(bad)
