"""The health policy (shared/health.py over pipelines/health_policy.json): its shape, the
beat-the-baseline rule, and that its numbers are written in that file only (every consumer's own
test shows it reads them: test_catalog, test_mlops_promotion, test_mlops_staleness, test_report,
test_forecast_metrics, test_workflows, test_infra)."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from shared.health import POLICY_FILE, HealthPolicy, PolicyError, beats_baseline, policy
from tests.drivers import ROOT_DIR

ROOT = ROOT_DIR
#: where the product's code and deployment live (docs, tests and the samples are not searched)
SCOPES = ("pipelines", "shared", ".github", "infra")
SUFFIXES = {".py", ".toml", ".yml", ".yaml", ".json", ".bicep", ".bicepparam", ".kql", ".sh"}
#: a number on a line that speaks of a model's age (or is a dashboard's threshold) is the age gate
AGE_WORDS = re.compile(r"(?i)(?<![a-z])(age|ages|days?|stale|older|threshold\w*)(?![a-z])")
#: numbers equal to the policy's that are not thresholds: (file, a pattern of the line or None
#: for the whole file) -> why
NOT_THRESHOLDS = {
    ("shared/tooling/synth.py", None): "the data generator's world: region shares, demand and weather parameters",
    ("shared/tooling/synth_world.py", None): "the data generator's world: regions, stores and their layouts",
    ("shared/tooling/synth_weather.py", None): "the data generator's weather parameters",
    ("shared/tooling/synth_demand.py", None): "the data generator's demand parameters",
    ("pipelines/forecast/src/models.py", r"^WEIGHTS = "): "the old blend's grid of weights",
    ("pipelines/smoke/src/step.py", r"time\.sleep\("): "the smoke step's wait between two looks at the clock",
}


def test_the_policy_holds_the_gates_the_margin_the_staleness_limit_and_the_baseline_rule():
    p = policy()
    raw = json.loads(POLICY_FILE.read_text())
    assert p.gates.max_mape == raw["gates"]["max_mape"] and p.gates.max_age_days == raw["gates"]["max_age_days"]
    assert p.promotion.margin == raw["promotion"]["margin"]
    assert (p.baseline.margin, p.baseline.min_share) == (raw["baseline"]["margin"], raw["baseline"]["min_share"])
    # one number for the age: the gate is the staleness limit
    assert p.stale_days == p.gates.max_age_days
    # the engagement's numbers, as they were in six places before
    assert (p.gates.max_mape, p.gates.max_age_days, p.promotion.margin, p.baseline.min_share) == (0.45, 60, 0.02, 0.75)


def test_a_broken_policy_names_every_problem(tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"gates": {"max_mape": -1}, "promotion": {"margin": 0.02, "extra": 1}}))
    with pytest.raises(PolicyError) as e:
        policy(bad)
    text = str(e.value)
    for problem in ("gates.max_mape", "gates.max_age_days", "promotion.extra", "baseline"):
        assert problem in text
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PolicyError, match="broken.json"):
        policy(tmp_path / "broken.json")


def test_beating_the_baseline_is_a_mape_below_the_baseline_s_by_more_than_the_margin():
    # margin 0: strictly below, as the report, evaluate and CI each said on their own before
    assert beats_baseline(0.30, 0.31, 0) and not beats_baseline(0.31, 0.31, 0) and not beats_baseline(0.4, 0.3, 0)
    assert not beats_baseline(None, 0.3, 0) and not beats_baseline(0.3, None, 0)
    assert not beats_baseline(math.nan, 0.3, 0) and not beats_baseline(0.3, math.inf, 0)
    assert beats_baseline(0.30, 0.36, 0.05) and not beats_baseline(0.30, 0.35, 0.05)
    stricter = HealthPolicy.model_validate(
        policy().model_dump() | {"baseline": {"margin": 0.05, "min_share": policy().baseline.min_share}}
    )
    assert policy().beats_baseline(0.30, 0.33) and not stricter.beats_baseline(0.30, 0.33)


# --- the numbers are written in one file ----------------------------------------------------------


def _code_lines(path: Path, text: str) -> list[tuple[int, str]]:
    """(line number, code) of a file, comments and docstrings left out: for Python, each line
    holding a number or a string that is not a docstring; for the rest, each line without its
    comment (``#``, ``//``; a JSON file's ``"$comment"``)."""
    if path.suffix == ".py":
        tree = ast.parse(text)
        docstrings = {
            id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
        }
        lines = text.splitlines()
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docstrings and not isinstance(node.value, bool):
                if isinstance(node.value, int | float):
                    code = re.sub(r"\s#.*$", "", lines[node.lineno - 1])  # the line, for its words
                    found.append((node.lineno, f"{node.value!r} {code}"))
                elif isinstance(node.value, str):
                    found.append((node.lineno, node.value))
        return sorted(found)
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if path.suffix in (".bicep", ".kql"):
            line = re.sub(r"(^|\s)//.*$", "", line)
        elif path.suffix in (".toml", ".yml", ".yaml", ".sh", ".bicepparam"):
            line = re.sub(r"(^|\s)#.*$", "", line)
        elif path.suffix == ".json" and re.match(r'\s*"\$comment"', line):
            continue
        found.append((number, line))
    return found


def threshold_literals(root: Path, rules: HealthPolicy) -> list[str]:
    """Every place under ``root``'s product folders, outside the policy file, where one of the
    policy's numbers is written in code: a fraction (the MAPE gate, the margins, the share)
    anywhere, the age gate on a line about age or days. ``file:line: value`` each."""
    values = [rules.gates.max_mape, rules.promotion.margin, rules.baseline.margin, rules.baseline.min_share]
    fractions = {f"{v:g}" for v in values if v and v != int(v)}
    age = f"{rules.gates.max_age_days:g}"
    number = r"(?<![\w.]){}(?:\.0)?(?![\w.]|\.\d)"
    found = []
    for scope in SCOPES:
        for path in sorted((root / scope).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.suffix not in SUFFIXES or "__pycache__" in path.parts or path.resolve() == POLICY_FILE:
                continue
            for line_number, code in _code_lines(path, path.read_text(encoding="utf-8")):
                hits = [v for v in fractions if re.search(number.format(re.escape(v)), code)]
                if re.search(number.format(age), code) and AGE_WORDS.search(code):
                    hits.append(age)
                if hits and not _not_a_threshold(rel, path, line_number):
                    found += [f"{rel}:{line_number}: {v}" for v in sorted(hits)]
    return list(dict.fromkeys(found))


def _not_a_threshold(rel: str, path: Path, line_number: int) -> bool:
    line = path.read_text(encoding="utf-8").splitlines()[line_number - 1]
    return any(f == rel and (pattern is None or re.search(pattern, line)) for f, pattern in NOT_THRESHOLDS)


def test_the_policy_s_numbers_are_written_in_the_policy_file_only():
    assert threshold_literals(ROOT, policy()) == []
    for file, _ in NOT_THRESHOLDS:
        assert (ROOT / file).is_file(), f"NOT_THRESHOLDS names {file}, which is gone"


def test_the_search_finds_a_threshold_written_in_code_but_not_in_a_comment_or_a_docstring(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "gate.py").write_text(
        '"""Models above 0.45 fail; older than 60 days are stale."""\n'
        "MAX_MAPE = 0.45  # the gate\n"
        "# a margin of 0.02\n"
        "def stale(age_days):\n"
        "    return age_days > 60\n"
        "TIMEOUT_S = 60\n"
        'TITLE = f"beats the baseline on {0.75:.0%} of the models"\n'
    )
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "rule.kql").write_text("// older than 60 days\nT | where age_days > 60.0\n")
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yml").write_text("run: check --max-overall-mape 0.45  # 0.75\n")
    assert threshold_literals(tmp_path, policy()) == [
        "shared/gate.py:2: 0.45",
        "shared/gate.py:5: 60",
        "shared/gate.py:7: 0.75",
        ".github/ci.yml:1: 0.45",
        "infra/rule.kql:2: 60",
    ]
