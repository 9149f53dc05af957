"""The command line and the README's main job."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from shared.tooling.cli import SAMPLES, main
from tests.drivers import ROOT_DIR, docs_text

ROOT = ROOT_DIR


def test_the_main_job_on_samples_ingests_every_file_and_accounts_for_every_row(tmp_path):
    out = io.StringIO()
    assert main(["--lake", str(tmp_path), "run", "--samples", str(SAMPLES), "--no-pipeline"], out=out) == 0
    text = out.getvalue()
    raw_files = [p for p in SAMPLES.rglob("*") if p.is_file()]
    m = re.search(r"(\d+) file\(s\): (\d+) rows read, (\d+) written, (\d+) rejected; (\d+) file\(s\) quarantined", text)
    assert m, text
    files, read, written, rejected, quarantined = map(int, m.groups())
    assert files == len(raw_files) and read == written + rejected and read > 1000
    assert quarantined == 0 and rejected == 0  # the samples are clean
    for dataset in ("weather_daily", "shipments_weekly", "store_demographics"):
        assert list((tmp_path / "curated" / dataset / "v1").rglob("*.csv")), dataset
    again = io.StringIO()
    main(["--lake", str(tmp_path), "run", "--samples", str(SAMPLES), "--no-pipeline"], out=again)
    assert f"{len(raw_files)} file(s) unchanged since their last ingest" in again.getvalue()


def test_ingest_reports_a_quarantined_file_by_its_reason(tmp_path):
    (tmp_path / "raw" / "weather").mkdir(parents=True)
    (tmp_path / "raw" / "weather" / "x.csv").write_text("nothing,we,know\n1,2,3\n")
    out = io.StringIO()
    assert main(["--lake", str(tmp_path), "ingest"], out=out) == 3  # done, with files quarantined
    assert "quarantined: no_matching_format" in out.getvalue()
    assert "1 file(s) quarantined" in out.getvalue()


def test_formats_lists_every_mapping():
    out = io.StringIO()
    main(["formats"], out=out)
    assert "weather_openmeteo_json" in out.getvalue() and "demographics_store_master_jsonl" in out.getvalue()


def test_a_bad_path_is_an_error_message_not_a_traceback(tmp_path, capsys):
    assert main(["--lake", str(tmp_path), "ingest", "curated/x.csv"], out=io.StringIO()) == 2
    assert "error: 'curated/x.csv' is not a raw file" in capsys.readouterr().err


def test_the_readme_commands_are_the_makefile_targets_ci_runs():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make run " in readme and "make test " in readme
    assert re.search(r"^run: ", makefile, re.M) and "-m shared run" in makefile
    assert re.search(r"^test: setup", makefile, re.M) and "-m pytest" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for target in ("lint", "bench", "setup"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_readme_command_line_examples_run(tmp_path):
    import shlex

    lines = re.findall(r"^\.venv/bin/python -m shared (.+?)(?:\s+#.*)?$", docs_text(), re.M)
    assert len(lines) >= 8
    (tmp_path / "lake").mkdir()  # what the README's first command, run, leaves
    run_id = None
    for line in lines:
        line = re.sub(r"\s*\[[^\]]*\]", "", line)  # optional parts
        args = shlex.split(line)
        if "--lake" in args:
            args[args.index("--lake") + 1] = str(tmp_path / "other")
            (tmp_path / "other").mkdir(exist_ok=True)  # another lake: an existing folder
        else:
            args = ["--lake", str(tmp_path / "lake"), *args]
        if "<run_id>" in args:
            assert run_id, "the README shows status/cancel before a submit"
            args = [run_id if a == "<run_id>" else a for a in args]
        if args[2:3] == ["run"]:
            continue  # the main job has its own test
        out = io.StringIO()
        code = main(args, out=out)
        assert code == 0, (line, out.getvalue())
        if args[2] == "submit":
            run_id = re.search(r'"run_id": "([^"]+)"', out.getvalue()).group(1)
            assert "watch: succeeded" in out.getvalue()


def test_the_readme_submit_body_is_a_valid_request():
    from shared.aml.catalog import load_catalog
    from shared.aml.request import validate_request

    body = re.search(r"^(\{\"parameters\".+?\})\n```", docs_text(), re.M | re.S).group(1)
    request, problems = validate_request(
        load_catalog()["smoke"], json.loads(body.replace("@{pipeline().RunId}", "adf-1")) | {"inputs": {}}
    )
    assert problems == [] and request.parameters["region"] == "west"


def test_the_whole_weekly_batch_end_to_end_at_a_small_size(tmp_path):
    """Two weeks of the loop: generated raw data -> ingest (which announces the complete week)
    -> the weekly batch (train, register, promote, score with production) -> one more week of
    data -> its batch (retrain what changed, promote or keep, score) -> summary and report."""
    from html.parser import HTMLParser

    out = io.StringIO()
    args = [
        "--lake",
        str(tmp_path),
        "run",
        "--regions",
        "2",
        "--stores-per-region",
        "2",
        "--skus",
        "4",
        "--weeks",
        "40",
    ]
    assert main(args, out=out) == 0, out.getvalue()
    text = out.getvalue()
    for step in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"):
        assert step in text
    announced = re.findall(r"^the data of the week of (\S+) is complete: its weekly batch starts", text, re.M)
    assert len(announced) == 2 and announced[0] < announced[1], text
    week2 = announced[1]
    summary = json.loads((tmp_path / "batches" / f"week={week2}" / "summary.json").read_text())
    assert summary["outcome"] == "succeeded" and summary["by"] == "data_complete", summary
    assert re.search(rf"^week of {week2} \(data complete\): \d+ retrained", text, re.M), text
    for name, line in summary["groups"].items():
        pointer = tmp_path / "models" / name / "production.json"
        serving = json.loads(pointer.read_text())["version"] if pointer.exists() else None
        assert line["scored_with"] == serving, (name, line)  # scored with production, whatever was trained
        if line["training"] == "retrained":
            assert line["decision"] in ("promoted", "kept") and line["decision_why"]
        if serving is not None:
            csv = (tmp_path / "curated" / "forecasts" / "v1" / f"week={week2}" / f"{name}.csv").read_text().splitlines()
            # every row says what made it: the production model here (issue 20's source column)
            assert csv[0] == "store_id,sku,week_start,forecast,model,model_version,source,new_sku"
            assert {tuple(row.split(",")[4:7]) == (name, str(serving), "production") for row in csv[1:]} == {True}
    m = re.search(r"(\d+) of (\d+) models healthy .*?; (\d+) of (\d+) beat the historical-average baseline", text)
    assert m, text
    healthy, models, beat, _ = map(int, m.groups())
    assert models == 8 and beat >= models // 2
    assert re.search(r"^\w+\.(large|small)\.(fast|slow) +0\.\d{3} ", text, re.M)
    report = Path(re.search(r"^report: (.+)$", text, re.M).group(1))
    page = report.read_text()

    class Count(HTMLParser):
        tags: dict[str, int] = {}

        def handle_starttag(self, tag, attrs):
            self.tags[tag] = self.tags.get(tag, 0) + 1

    counter = Count()
    counter.feed(page)
    assert counter.tags.get("svg", 0) >= 3 and counter.tags.get("tr", 0) == models + 1
    assert "<script" not in page  # opens anywhere, without Python or JavaScript

    # the same job again on the same lake: nothing is new, so nothing is announced, the latest
    # week's batch runs once more; a group whose production model was trained on this data is
    # skipped, and so is one whose last model was kept on the same inputs and code (training it
    # again would give the same answer): only a group whose training failed is retried
    again = io.StringIO()
    assert main(args, out=again) == 0, again.getvalue()
    text = again.getvalue()
    assert "is complete: its weekly batch starts" not in text
    assert text.count(f"no week was announced by this ingest (the week of {week2} was complete before it") == 1
    assert f"nothing new: the lake had this week already, and the week of {week2} had its batch" in text
    rerun = json.loads((tmp_path / "batches" / f"week={week2}" / "summary.json").read_text())
    assert rerun["by"] == "cli" and rerun["outcome"] == "succeeded"
    for name, line in rerun["groups"].items():
        before = summary["groups"][name]
        if before.get("decision") == "promoted":
            assert line["training"] == "skipped" and line["scored_with"] == before["scored_with"], (name, line)
            assert line["why"].startswith(f"inputs unchanged since v{before['scored_with']}")
        elif before["training"] == "failed":
            assert line["training"] == "failed" or line["why"].startswith("retrying: training failed"), line
        else:
            assert line["training"] == "skipped" and line["candidate"] == before["version"], (name, line)
            said = f"unchanged since the last batch, which trained v{line['candidate']} on the same inputs and code"
            assert line["why"] == said, line


def test_submit_refuses_an_upper_case_file_uri_as_an_input(tmp_path):
    out = io.StringIO()
    code = main(["--lake", str(tmp_path), "submit", "forecast", "--input", "curated=FILE:///etc/passwd"], out=out)
    answer = json.loads(out.getvalue())
    assert code != 0 and "run_id" not in answer
    assert [p["field"] for p in answer["problems"]] == ["inputs.curated"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
