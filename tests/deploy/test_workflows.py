"""CI/CD: the GitHub workflows validate against the workflow schema (check-jsonschema, offline),
do what the engagement's flow says (pull request gates; main deploys dev; a release deploys
prod behind its environment's approval, both through one reusable deploy workflow with OIDC),
and the scripts they run behave."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from shared.tooling.cli import main as cli_main
from tests.deploy.test_infra import find_tool
from tests.drivers import ROOT_DIR

ROOT = ROOT_DIR
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
    assert {f.name for f in files} == {"pull-request.yml", "main.yml", "release.yml", "deploy.yml"}
    proc = check_jsonschema(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    del broken["jobs"]["deploy"]["runs-on"]
    broken["jobs"]["deploy"]["timeout-minutes"] = "ten"
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


@pytest.mark.parametrize(
    ("name", "trigger", "environment"),
    [
        ("main.yml", {"push": {"branches": ["main"]}}, "dev"),
        ("release.yml", {"release": {"types": ["published"]}}, "prod"),
    ],
)
def test_main_deploys_dev_and_a_release_deploys_prod_through_the_deploy_workflow(name, trigger, environment):
    doc = workflow(name)
    assert doc["on"] == trigger
    assert doc["permissions"] == {"contents": "read", "id-token": "write"}
    (job,) = doc["jobs"].values()
    assert job == {"uses": "./.github/workflows/deploy.yml", "with": {"environment": environment}}


def test_the_deploy_job_runs_in_its_environment_with_oidc_and_no_secret():
    doc = workflow("deploy.yml")
    inputs = doc["on"]["workflow_call"]["inputs"]
    assert inputs["environment"]["required"] is True
    (job,) = doc["jobs"].values()
    # the GitHub environment: its variables, and prod's required reviewers (the approval)
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["env"]["AZURE_ENV_TYPE"] == "${{ inputs.environment }}"
    assert job["concurrency"] == {"group": "deploy-${{ inputs.environment }}", "cancel-in-progress": False}
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert "--federated-credential-provider github" in runs(doc)
    for workflow_file in WORKFLOWS.glob("*.yml"):
        text = workflow_file.read_text()
        assert "secrets." not in text and "creds:" not in text and "client-secret" not in text, workflow_file.name


def _step_index(job: dict, command: str) -> int:
    (i,) = [i for i, step in enumerate(job["steps"]) if command in step.get("run", "")]
    return i


def test_a_deploy_provisions_deploys_registers_the_aml_assets_and_checks_them_and_adf():
    """Provision (infra, Data Factory from adf/, the compute cluster), then deploy, whose
    postdeploy hook wires the apps and runs `python -m shared aml-assets` with the workspace the
    provision reports; then nothing may be missing (`--check`) and ADF's trigger runs again."""
    (job,) = workflow("deploy.yml")["jobs"].values()
    order = [
        "pip install --quiet -r requirements.txt",
        "azd env refresh",
        "azd provision --no-prompt",
        "azd deploy --no-prompt",
        "python -m shared aml-assets --check",
        "az datafactory trigger show",
    ]
    steps = [_step_index(job, command) for command in order]
    assert steps == sorted(steps), steps
    python = job["steps"][steps[0]]["run"]
    assert 'echo "FORECASTOPS_PYTHON=$RUNNER_TEMP/deploy-venv/bin/python" >> "$GITHUB_ENV"' in python
    check = job["steps"][steps[4]]["run"]
    for name in ("AML_SUBSCRIPTION_ID", "AML_RESOURCE_GROUP", "AML_WORKSPACE"):
        assert f"{name}=$(azd env get-value {name})" in check
    assert 'test "$state" = "Started"' in job["steps"][steps[5]]["run"]
    # azd deploy registers the assets: its postdeploy hook runs aml-assets.sh, which runs the command
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]
    assert hooks["postdeploy"]["posix"]["run"] == "./infra/scripts/postdeploy.sh"
    assert '"$here/aml-assets.sh"' in (ROOT / "infra" / "scripts" / "postdeploy.sh").read_text()
    script = (ROOT / "infra" / "scripts" / "aml-assets.sh").read_text()
    assert "python=${FORECASTOPS_PYTHON:-}" in script and '-m shared aml-assets "$@"' in script


def test_the_command_the_deploy_runs_exists_with_its_check_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["aml-assets", "--help"])
    assert exit_.value.code == 0
    assert "--check" in capsys.readouterr().out


def test_nothing_builds_a_package_no_deploy_uses():
    """azd packages the app's folder itself (.funcignore honoured): no workflow builds another."""
    for workflow_file in WORKFLOWS.glob("*.yml"):
        assert "upload-artifact" not in workflow_file.read_text() or workflow_file.name == "pull-request.yml"
    assert not (SCRIPTS / "package.py").exists()


# --- the scripts the workflows run ------------------------------------------------------------


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


def _validate(lake: Path, policy: Path | None = None) -> subprocess.CompletedProcess:
    more = ["--policy", str(policy)] if policy else []
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "validate_models.py"), "--lake", str(lake), *more],
        capture_output=True,
        text=True,
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


def test_model_validation_takes_its_gates_from_the_health_policy(tmp_path):
    from shared.health import POLICY_FILE

    # the workflow names no threshold: the script reads the policy file the app reads
    (line,) = [
        s["run"]
        for s in workflow("pull-request.yml")["jobs"]["model-validation"]["steps"]
        if "validate_models" in s.get("run", "")
    ]
    assert line.split() == [".venv/bin/python", ".github/scripts/validate_models.py", "--lake", '"$RUNNER_TEMP/lake"']
    # three models of four beat their baseline: the policy's share (0.75) passes, a policy asking all fails
    rows = [_model("a", 0.2, 0.4), _model("b", 0.2, 0.4), _model("c", 0.2, 0.4), _model("d", 0.5, 0.4)]
    _fake_run(tmp_path / "lake", [*rows, _model("overall", 0.3, 0.4)])
    assert _validate(tmp_path / "lake").returncode == 0
    every = json.loads(POLICY_FILE.read_text())
    every["baseline"]["min_share"] = 1.0
    (tmp_path / "every.json").write_text(json.dumps(every))
    proc = _validate(tmp_path / "lake", tmp_path / "every.json")
    assert proc.returncode == 1 and "75% of the models beat their baseline; the gate is 100%" in proc.stdout
    # the rule is the policy's: a margin the models do not clear fails them
    every["baseline"] = {"margin": 0.25, "min_share": 0.75}
    (tmp_path / "margin.json").write_text(json.dumps(every))
    proc = _validate(tmp_path / "lake", tmp_path / "margin.json")
    assert proc.returncode == 1 and "0% of the models beat their baseline" in proc.stdout
    assert "overall MAPE 0.300 does not beat the baseline's 0.400" in proc.stdout


def test_makefile_setup_makes_the_tools_venv():
    makefile = (ROOT / "Makefile").read_text()
    assert "setup: $(STAMP) $(TOOLS_STAMP)" in makefile
    assert "$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip" in makefile
    assert "-r requirements-tools.txt" in makefile
    pins = [line for line in (ROOT / "requirements-tools.txt").read_text().splitlines() if line and line[0] != "#"]
    assert pins and all("==" in line for line in pins)
