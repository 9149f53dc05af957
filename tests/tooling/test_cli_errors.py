"""The command line, for every wrong use: one line on stderr, the documented exit code, and
nothing left behind."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shared.tooling import bulk_ingest, mainjob
from shared.tooling.cli import SAMPLES, main
from tests.drivers import ROOT_DIR, US_OBS_HEADER, lines

ROOT = ROOT_DIR


def run_cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout, and the lines on stderr."""
    out = io.StringIO()
    code = main(list(args), out=out)
    err = capsys.readouterr().err
    return code, out.getvalue(), err.splitlines()


def one_line(err: list[str], words: str) -> str:
    assert len(err) == 1, err
    assert words in err[0], err
    return err[0]


def lake_with_weather(root: Path, *rows: str) -> Path:
    (root / "raw" / "weather" / "us_obs").mkdir(parents=True)
    (root / "raw" / "weather" / "us_obs" / "2026.csv").write_text(lines(US_OBS_HEADER, *rows))
    return root


# the lake ------------------------------------------------------------------------------------------
def test_a_lake_folder_that_does_not_exist_is_a_wrong_use_not_an_empty_success(tmp_path, capsys):
    code, out, err = run_cli(capsys, "--lake", str(tmp_path / "nonexistent"), "ingest")
    assert code == 2 and "0 file(s)" not in out
    one_line(err, f"no lake at {tmp_path / 'nonexistent'}")
    assert not (tmp_path / "nonexistent").exists()


def test_a_lake_that_is_a_file_is_a_wrong_use(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "--lake", str(tmp_path / "file"), "ingest")
    assert code == 2
    one_line(err, "is a file, not a folder")


def test_a_lake_that_is_not_writable_is_a_wrong_use(tmp_path, capsys):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes anywhere: a read-only file system then
        folder = Path("/proc/sys")
        if os.access(folder, os.W_OK):
            pytest.skip("no folder this user cannot write to")
    code, _, err = run_cli(capsys, "--lake", str(folder), "ingest")
    assert code == 2
    one_line(err, "is not writable")


def test_ingesting_a_raw_path_that_does_not_exist_says_not_found(tmp_path, capsys):
    lake_with_weather(tmp_path, "2134,01/31/2026,50,32,0,")
    code, out, err = run_cli(capsys, "--lake", str(tmp_path), "ingest", "raw/weather/us_obs/2027.csv")
    assert code == 2 and out == ""
    one_line(err, "raw/weather/us_obs/2027.csv: not found in the lake")
    assert not (tmp_path / "curated").exists()  # nothing was ingested before the check


# run -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["missing", "empty", "no-raw-file"])
def test_run_samples_from_a_folder_without_raw_files_stops_before_anything(tmp_path, capsys, which):
    samples = tmp_path / "samples"
    if which != "missing":
        samples.mkdir()
    if which == "no-raw-file":
        (samples / "README.md").write_text("no data here")
    code, out, err = run_cli(capsys, "--lake", str(tmp_path / "lake"), "run", "--samples", str(samples))
    assert code == 2 and out == ""
    one_line(err, f"--samples {samples}: no")
    assert not (tmp_path / "lake").exists()  # no pipeline submitted, no lake made


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--weeks", "5"], "--weeks 5: the forecast pipeline holds out the last 8 weeks"),
        (["--regions", "99"], "617,760 store-SKU-weeks"),
        (["--skus", "0"], "--skus 0: must be at least 1"),
    ],
    ids=["too-short", "too-large", "nothing"],
)
def test_a_generated_batch_that_could_not_finish_is_refused_up_front(tmp_path, capsys, args, words):
    t0 = time.monotonic()
    code, out, err = run_cli(capsys, "--lake", str(tmp_path / "lake"), "run", *args)
    assert code == 2 and out == "" and time.monotonic() - t0 < 5
    one_line(err, words)
    assert not (tmp_path / "lake").exists()


def test_a_short_batch_without_the_pipeline_is_fine_to_generate():
    mainjob.check_size(mainjob.Size(weeks=5), None)  # no holdout to cover
    mainjob.check_size(mainjob.Size(weeks=20), 8)  # the shortest the pipeline runs on (19 was seen to work)
    with pytest.raises(ValueError, match="give --weeks 20 or more"):
        mainjob.check_size(mainjob.Size(weeks=19), 8)


# options anywhere, and make run ---------------------------------------------------------------------
def test_options_work_before_and_after_the_command(tmp_path, capsys):
    lake_with_weather(tmp_path, "2134,01/31/2026,50,32,0,")
    assert run_cli(capsys, "ingest", "--lake", str(tmp_path))[0] == 0
    assert run_cli(capsys, "--lake", str(tmp_path), "ingest", "--force")[0] == 0
    code, out, _ = run_cli(capsys, "run", "--lake", str(tmp_path / "other"), "--samples", str(SAMPLES), "--no-pipeline")
    assert code == 0 and (tmp_path / "other" / "curated").is_dir(), out
    # given on both sides, the one after the command wins
    code, _, err = run_cli(capsys, "--lake", str(tmp_path / "nope"), "ingest", "--lake", str(tmp_path))
    assert code == 0, err


def test_make_run_passes_args_to_the_main_job():
    dry = subprocess.run(
        ["make", "-n", "run", "ARGS=--samples samples/raw --no-pipeline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"-m shared run --samples samples/raw --no-pipeline$", dry, re.M), dry
    readme = (ROOT / "README.md").read_text()
    assert 'make run ARGS="--samples samples/raw' in readme


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for code in ("0    all good", "1    failed", "2    wrong usage", "3    done, but some raw files were quarantined"):
        assert code in text
    assert "130  interrupted" in text


@pytest.mark.parametrize(
    "args",
    [["--bogus", "ingest"], ["ingest", "--bogus"], ["run", "--weeks", "x"], ["frobnicate"]],
    ids=["unknown-option", "unknown-option-after", "not-a-number", "unknown-command"],
)
def test_argument_errors_are_one_line_not_a_usage_block(capsys, args):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    one_line(err, "(python -m shared --help)")


# the batch goes on; the exit code says how it went --------------------------------------------------
def test_a_file_the_app_cannot_handle_is_listed_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
    lake_with_weather(tmp_path, "2134,01/31/2026,50,32,0,")
    (tmp_path / "raw" / "weather" / "us_obs" / "2025.csv").write_text(lines(US_OBS_HEADER, "2134,01/31/2025,50,32,0,"))
    real = bulk_ingest.ingest

    def crashes_on_2026(lake, path, **kw):
        if path.endswith("2026.csv"):
            raise RuntimeError("a bug\nwith a second line")
        return real(lake, path, **kw)

    monkeypatch.setattr(bulk_ingest, "ingest", crashes_on_2026)
    code, out, _ = run_cli(capsys, "--lake", str(tmp_path), "ingest")
    assert code == 1
    assert "failed: internal_error (RuntimeError: a bug)" in out
    assert "2 file(s): 1 rows read, 1 written, 0 rejected; 0 file(s) quarantined; 1 file(s) failed" in out
    assert (tmp_path / "curated" / "weather_daily" / "v1" / "us_obs" / "2025.csv").exists()


def test_a_batch_with_quarantined_files_exits_3_and_one_that_is_clean_0(tmp_path, capsys):
    lake_with_weather(tmp_path, "2134,01/31/2026,50,32,0,")
    assert run_cli(capsys, "--lake", str(tmp_path), "ingest")[0] == 0
    (tmp_path / "raw" / "weather" / "bad.csv").write_text("a,b\n1,2\n")
    assert run_cli(capsys, "--lake", str(tmp_path), "ingest")[0] == 3


def test_a_bad_mapping_file_is_one_line_naming_the_column_and_why(tmp_path, capsys):
    from shared.ingestion.formats import MAPPINGS_DIR

    text = (MAPPINGS_DIR / "weather_us_obs_csv.toml").read_text()
    text = text.replace('id = "weather_us_obs_csv"', 'id = "weather_mine"').replace(
        'precip_mm = { column = "Rain (in)", unit = "in" }',
        'precip_mm = { column = "Rain (in)", unit = "in", optional = true }',
    )
    (tmp_path / "weather_mine.toml").write_text(text)
    code, _, err = run_cli(capsys, "--mappings", str(tmp_path), "formats")
    assert code == 2
    one_line(err, "precip_mm is required in weather_daily, so its source cannot be optional")
    (tmp_path / "weather_mine.toml").write_text(text.replace(", optional = true }", " }"))
    code, out, _ = run_cli(capsys, "formats", "--mappings", str(tmp_path))
    assert code == 0 and re.search(rf"^weather_mine .+\({re.escape(str(tmp_path))}/weather_mine.toml\)$", out, re.M)


# storage --------------------------------------------------------------------------------------------
def test_a_wrong_storage_key_is_one_line(azurite, capsys, monkeypatch):
    wrong = re.sub(r"AccountKey=[^;]+", "AccountKey=" + "A" * 86 + "==", azurite.connection_string)
    monkeypatch.setenv("FORECASTOPS_LAKE_BACKEND", "blob")
    monkeypatch.setenv("LAKE_STORAGE", wrong)
    code, _, err = run_cli(capsys, "ingest")
    assert code == 1
    one_line(err, "storage refused access (403")


def test_an_unreachable_storage_endpoint_fails_in_seconds_in_one_line(capsys, monkeypatch):
    from shared.lake import AZURITE_CONNECTION_STRING

    dead = AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", "127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("FORECASTOPS_LAKE_BACKEND", "blob")
    monkeypatch.setenv("LAKE_STORAGE", dead)
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, "ingest", "raw/weather/x.csv")
    assert code == 1 and time.monotonic() - t0 < 10
    one_line(err, "storage unreachable")


# interrupted ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_generation_says_so_in_one_line_and_leaves_no_temporary_folder(
    tmp_path, capsys, monkeypatch, how
):
    import tempfile

    from shared.tooling import synth

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def generates_then_is_stopped(out_dir, **kw):
        (Path(out_dir) / "weather").mkdir(parents=True)
        (Path(out_dir) / "weather" / "big.csv").write_bytes(b"x" * 100_000)
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the signal arrives while the work goes on
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "generate", generates_then_is_stopped)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli(capsys, "--lake", str(tmp_path / "lake"), "run", "--regions", "2")
    assert code == 130
    one_line(err, "interrupted; rerun to resume")
    assert list((tmp_path / "tmp").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_interrupted_ingest_leaves_no_temporary_file_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    from shared.ingestion import convert

    lake_with_weather(tmp_path, "2134,01/31/2026,50,32,0,")
    (tmp_path / "raw" / "weather" / "us_obs" / "2025.csv").write_text(lines(US_OBS_HEADER, "2134,01/31/2025,50,32,0,"))
    real, calls = convert.Converter.convert, []

    def ctrl_c_on_the_second_file(self, b):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, b)

    monkeypatch.setattr(convert.Converter, "convert", ctrl_c_on_the_second_file)
    code, _, err = run_cli(capsys, "--lake", str(tmp_path), "ingest")
    assert code == 130
    one_line(err, "interrupted; rerun to resume")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    monkeypatch.setattr(convert.Converter, "convert", real)
    code, out, _ = run_cli(capsys, "--lake", str(tmp_path), "ingest")
    assert code == 0 and "1 file(s) unchanged since their last ingest" in out


def test_an_interrupted_main_job_cancels_the_pipeline_run_it_started(tmp_path, capsys, monkeypatch):
    from shared.aml import runs

    started = {}
    real_submit = runs.submit

    def submit(backend, *a, **kw):
        answer = real_submit(backend, *a, **kw)
        started["backend"], started["run_id"] = backend, answer[1]["run_id"]
        return answer

    def follow_then_ctrl_c(backend, run_id, options, out):
        raise KeyboardInterrupt

    from shared.tooling import weekly_batch

    monkeypatch.setattr(runs, "submit", submit)
    monkeypatch.setattr(weekly_batch, "_follow", follow_then_ctrl_c)
    code, _, err = run_cli(capsys, "--lake", str(tmp_path), "run", "--samples", str(SAMPLES))
    assert code == 130
    assert err == [
        f"the pipeline run {started['run_id']} was canceled",
        "interrupted; rerun to resume (files already ingested are kept)",
    ]
    status = runs.get(started["backend"], started["run_id"])[1]
    assert status["aml_status"] in ("CancelRequested", "Canceled")
    deadline = time.monotonic() + 60
    while not runs.get(started["backend"], started["run_id"])[1]["terminal"] and time.monotonic() < deadline:
        time.sleep(0.5)  # let the runner stop before the lake's folder goes


# watch -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["watch"], ["status", "--wait"]])
def test_following_a_run_that_does_not_exist_answers_no_run_at_once(tmp_path, capsys, command):
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, "--lake", str(tmp_path), *command, "forecast-nope-0123456789abcdef0123")
    assert code == 2 and time.monotonic() - t0 < 5
    one_line(err, "no run forecast-nope-0123456789abcdef0123")


# progress ------------------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_a_rate_and_an_eta_on_a_terminal_and_nothing_otherwise(tmp_path, capsys, monkeypatch):
    import sys

    root = lake_with_weather(tmp_path, "2134,01/31/2026,50,32,0,")
    for year in range(2021, 2025):
        (root / "raw" / "weather" / "us_obs" / f"{year}.csv").write_text(
            lines(US_OBS_HEADER, f"2134,01/31/{year},50,32,0,")
        )
    code, out, err = run_cli(capsys, "--lake", str(root), "ingest")
    assert code == 0 and err == []  # not a terminal: no bar, only the summary on stdout
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr("shared.tooling.progress.MIN_INTERVAL_S", 0)  # draw every file, fast as they go
    assert main(["--lake", str(root), "ingest", "--force"], out=io.StringIO()) == 0
    drawn = terminal.getvalue()
    assert re.search(r"ingesting: +\d+%.*\d+/5 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(file/s|s/file)[,\]]", drawn), drawn


def test_an_error_inside_the_app_is_a_failure_not_a_wrong_use(tmp_path, monkeypatch, capsys):
    """Exit 2 says the command was used wrongly; a ValueError deep inside the app is a failure
    (exit 1), named as unexpected."""
    from shared.tooling import cli, mainjob

    def broken(*args, **kwargs):
        raise ValueError("an internal conversion went wrong")

    monkeypatch.setattr(mainjob, "run", broken)
    code = cli.main(["--lake", str(tmp_path / "lake"), "run", "--samples", str(cli.SAMPLES), "--no-pipeline"])
    assert code == 1 and "unexpected ValueError" in capsys.readouterr().err
