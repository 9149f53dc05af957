"""CI/CD: the GitHub workflows validate against the workflow schema (check-jsonschema, offline),
do what the engagement's flow says (pull request gates, a package on main, a gated OIDC deploy
on a release), and the scripts they run behave."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from shared.tooling.cli import main as cli_main
from tests.test_infra import find_tool

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"


def workflow(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def runs(doc: dict) -> str:
    return "\n".join(step.get("run", "") for job in doc["jobs"].values() for step in job["steps"])


def uses(doc: dict) -> list[str]:
    return [step["uses"] for job in doc["jobs"].values() for step in job["steps"] if "uses" in step]


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    tool = find_tool("check-jsonschema")
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.github-workflows", *map(str, files)], capture_output=True, text=True
    )


def test_every_workflow_validates_against_the_github_workflow_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"pull-request.yml", "main.yml", "release.yml"}
    proc = check_jsonschema(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = yaml.safe_load((WORKFLOWS / "main.yml").read_text())
    del broken["jobs"]["package"]["runs-on"]
    broken["jobs"]["package"]["timeout-minutes"] = "ten"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_jsonschema(path).returncode != 0


def test_pull_requests_lint_type_check_test_and_validate_the_models():
    doc = workflow("pull-request.yml")
    assert "pull_request" in doc["on"]
    commands = runs(doc)
    for target in ("make lint", "make typecheck", "make test"):
        assert target in commands
    assert "validate_models.py" in commands
    assert set(doc["jobs"]) == {"lint", "typecheck", "test", "model-validation"}
    # the test job has Node for Azurite (make test runs npm ci)
    assert "actions/setup-node@v4" in [s.get("uses") for s in doc["jobs"]["test"]["steps"]]


def test_the_model_validation_runs_the_batch_with_options_the_command_line_has(capsys):
    doc = workflow("pull-request.yml")
    (line,) = [s["run"] for s in doc["jobs"]["model-validation"]["steps"] if "-m shared" in s.get("run", "")]
    args = line.split("-m shared", 1)[1].split()
    assert args[:2] == ["--lake", '"$RUNNER_TEMP/lake"'] and args[2] == "run"
    options = [a for a in args[3:] if a.startswith("--")]
    assert options == ["--regions", "--stores-per-region", "--skus", "--seed"]
    with pytest.raises(SystemExit) as exit_:
        cli_main(["run", "--help"])
    assert exit_.value.code == 0
    helptext = capsys.readouterr().out
    for option in options:
        assert option in helptext


def test_main_builds_the_package_and_keeps_it_as_an_artifact():
    doc = workflow("main.yml")
    assert doc["on"] == {"push": {"branches": ["main"]}}
    assert "package.py --output" in runs(doc)
    assert "actions/upload-artifact@v4" in uses(doc)


def test_a_release_deploys_to_prod_behind_the_environment_with_oidc_and_no_secret():
    text = (WORKFLOWS / "release.yml").read_text()
    doc = workflow("release.yml")
    assert doc["on"] == {"release": {"types": ["published"]}}
    assert doc["permissions"] == {"contents": "read", "id-token": "write"}
    (job,) = doc["jobs"].values()
    assert job["environment"] == "prod"
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert "azd deploy --no-prompt" in runs(doc)
    assert "--federated-credential-provider github" in runs(doc)
    for workflow_file in WORKFLOWS.glob("*.yml"):
        assert "secrets." not in workflow_file.read_text(), workflow_file.name
    assert "creds:" not in text and "client-secret" not in text


# --- the scripts the workflows run ------------------------------------------------------------


def test_the_package_honours_funcignore(tmp_path):
    output = tmp_path / "app.zip"
    subprocess.run([sys.executable, str(SCRIPTS / "package.py"), "--output", str(output)], cwd=ROOT, check=True)
    names = set(zipfile.ZipFile(output).namelist())
    assert {"function_app.py", "host.json", "requirements.txt", "pipelines/catalog.toml"} <= names
    assert {"ingest_weather/__init__.py", "trigger_aml/__init__.py", "poll_aml_durable/__init__.py"} <= names
    assert any(n.startswith("shared/ingestion/mappings/") for n in names)
    excluded = (
        "tests/",
        "infra/",
        "adf/",
        ".github/",
        ".vscode/",
        ".venv/",
        ".venv-tools/",
        "node_modules/",
        "shared/tooling/",
    )
    assert not [n for n in names if n.startswith(excluded)]
    assert not names & {"azure.yaml", "test.http", "local.settings.json", "Makefile", "requirements-dev.txt"}
    assert not [n for n in names if "__pycache__" in n]


def test_the_package_pattern_rules(tmp_path):
    spec = importlib.util.spec_from_file_location("forecastops_package", SCRIPTS / "package.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    assert package.ignored("tests/test_x.py", ["tests"])
    assert package.ignored("a/b/__pycache__/x.pyc", ["__pycache__"])
    assert package.ignored(".github/workflows/x.yml", [".git*"])
    assert package.ignored("bench/data/x", ["bench/data"]) and not package.ignored("x/bench/data", ["/bench/data"])
    assert not package.ignored("shared/lake.py", ["tests", "*.md"])
    (tmp_path / ".funcignore").write_text("!keep\n")
    with pytest.raises(SystemExit):
        package.read_ignore(tmp_path / ".funcignore")


def _fake_run(lake: Path, rows: list[dict], status: str = "Completed") -> None:
    run = lake / "runs" / "forecast-abc"
    metrics = run / "outputs" / "evaluate" / "metrics"
    metrics.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"aml_status": status}))
    with (metrics / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["model", "mape", "baseline_mape", "beats_baseline", "trained_at"])
        writer.writeheader()
        writer.writerows(rows)


def _model(name: str, mape: float, base: float, age_days: float = 0) -> dict:
    return {
        "model": name,
        "mape": mape,
        "baseline_mape": base,
        "beats_baseline": str(mape < base),
        "trained_at": time.time() - age_days * 86400,
    }


def _validate(lake: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "validate_models.py"), "--lake", str(lake)], capture_output=True, text=True
    )


def test_model_validation_passes_a_healthy_batch_and_warns_about_a_weak_model(tmp_path):
    _fake_run(
        tmp_path,
        [_model("a.large.fast", 0.2, 0.4), _model("a.small.slow", 0.5, 0.7), _model("overall", 0.3, 0.5)],
    )
    proc = _validate(tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "::warning::a.small.slow" in proc.stdout


@pytest.mark.parametrize(
    ("rows", "status", "message"),
    [
        ([_model("a", 0.2, 0.4), _model("overall", 0.5, 0.6)], "Completed", "overall MAPE 0.500 > 0.45"),
        ([_model("a", 0.2, 0.4), _model("overall", 0.4, 0.3)], "Completed", "does not beat the baseline"),
        ([_model("a", 0.5, 0.4), _model("b", 0.2, 0.4), _model("overall", 0.3, 0.4)], "Completed", "50% of the models"),
        ([_model("a", 0.2, 0.4, age_days=61), _model("overall", 0.2, 0.4)], "Completed", "trained 61 days ago"),
        ([_model("a", 0.2, 0.4), _model("overall", 0.2, 0.4)], "Failed", "ended Failed"),
    ],
)
def test_model_validation_fails_the_pull_request_when_a_gate_fails(tmp_path, rows, status, message):
    _fake_run(tmp_path, rows, status)
    proc = _validate(tmp_path)
    assert proc.returncode == 1
    assert "::error::" in proc.stdout and message in proc.stdout, proc.stdout


def test_makefile_setup_makes_the_tools_venv():
    makefile = (ROOT / "Makefile").read_text()
    assert "setup: $(STAMP) $(TOOLS_STAMP)" in makefile
    assert "$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip" in makefile
    assert "-r requirements-tools.txt" in makefile
    pins = [line for line in (ROOT / "requirements-tools.txt").read_text().splitlines() if line and line[0] != "#"]
    assert pins and all("==" in line for line in pins)
