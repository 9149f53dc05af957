"""Per-group fault isolation in the weekly batch (issue 22, item 3).

A group whose training fails (its fit raised, too little history to fit, the whole run
failed) costs its own group only: the register step reads which groups the training run
trained no model for, and why, from the run's ``manifest.json`` (:func:`untrained`); the
batch's summary lists them (``failed_groups``: group -> the one-line reason) and they are still
scored (by production, the previous version or the baseline).

A batch of a week that already had one (``rerun`` over HTTP, the main job run again on the
same lake) reads the week's last summary (:func:`last_batch`): when a group's inputs and the
training code are the same as then, a group whose training failed is retried ("retrying:
training failed in the last batch (<reason>)") and a group the last batch trained a model for
(promoted or kept) is not trained again (:func:`on_rerun`). So k failed groups cost a run of
k groups, not a whole run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from shared.lake import Lake, NotFoundError
from shared.mlops import inputs as group_inputs

log = logging.getLogger(__name__)

__all__ = ["LastBatch", "last_batch", "on_rerun", "untrained"]

#: a group the run was asked for and the data does not have (no failure: nothing to retry)
LEFT_OUT = "not in the training data: the run left it out"


def _rows(manifest: dict[str, Any], key: str) -> dict[str, str]:
    """``manifest[key]``'s rows (``{group, reason}``) as group -> reason; malformed rows skipped."""
    rows = manifest.get(key)
    found: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and isinstance(row.get("group"), str):
            found[row["group"]] = " ".join(str(row.get("reason") or "no reason given").split())
    return found


def untrained(lake: Lake, models: str, asked: list[str] | str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The groups the training run whose models folder is ``models`` trained no model for, from
    its ``manifest.json``: ``failed`` (group -> one-line reason: its fit raised, it had too few
    train rows, or none before the holdout's origin) and ``left_out`` (groups ``asked`` for that
    the data does not have). A run without a readable manifest: both empty (the summary then says
    the run produced no model for the group)."""
    try:
        manifest = json.loads(lake.read_bytes(f"{models}/manifest.json"))
    except NotFoundError:
        return {}, {}
    except ValueError as e:
        log.warning("weekly batch: %s/manifest.json does not read: %s", models, e)
        return {}, {}
    if not isinstance(manifest, dict):
        return {}, {}
    # a group fitted whose MLflow model could not be saved says so itself, not "its fit failed"
    rows = _rows(manifest, "failed")
    failed = {g: r if r.startswith("its MLflow model") else f"its fit failed: {r}" for g, r in rows.items()}
    failed |= {g: f"not fitted: {r}" for g, r in _rows(manifest, "not_fitted").items() if g not in failed}
    trained = {m.get("group") for m in manifest.get("models") or [] if isinstance(m, dict)}
    listed = manifest.get("groups")
    left_out: dict[str, str] = {}
    if isinstance(listed, list):
        for group in listed:
            if isinstance(group, str) and group not in trained and group not in failed:
                failed[group] = "not fitted: no train rows before the holdout's origin"
        if isinstance(asked, list):
            left_out = {g: LEFT_OUT for g in asked if g not in listed and g not in trained}
    return failed, left_out


@dataclass(frozen=True)
class LastBatch:
    """What the week's last batch did, as its summary says: the groups whose training failed
    (group -> why), the model version it trained per group (registered then, or found unchanged
    by a rerun since), the inputs' fingerprints it planned with and the training code's version."""

    failed: dict[str, str] = field(default_factory=dict)
    trained: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    code: str | None = None


def last_batch(lake: Lake, path: str) -> LastBatch | None:
    """The week's last batch from its summary at ``path``; None when there is none, or it does
    not say enough to compare with (no per-group lines or no fingerprints: an older summary, a
    batch that waited for data or whose step failed). A summary that does not read is logged and
    treated as none: every group is then planned by the usual rules."""
    try:
        summary = json.loads(lake.read_bytes(path))
    except NotFoundError:
        return None
    except ValueError as e:
        log.warning("weekly batch: the last summary %s does not read: %s", path, e)
        return None
    if not isinstance(summary, dict):
        return None
    groups, fingerprints = summary.get("groups"), summary.get("fingerprints")
    if not isinstance(groups, dict) or not isinstance(fingerprints, dict) or not groups:
        return None
    failed: dict[str, str] = {}
    trained: dict[str, int] = {}
    for name, line in groups.items():
        if not isinstance(line, dict):
            continue
        if line.get("training") == "failed":
            failed[name] = str(line.get("why") or "no reason recorded")
        version = line.get("version") if line.get("training") == "retrained" else line.get("candidate")
        if isinstance(version, int):
            trained[name] = version
    return LastBatch(failed, trained, {str(k): str(v) for k, v in fingerprints.items()}, summary.get("code"))


def on_rerun(
    last: LastBatch | None, name: str, fingerprint: str | None, code: str | None, action: str
) -> dict[str, Any] | None:
    """How a rerun plans ``name`` instead of the usual rules (which said ``action``), or None to
    keep them: only when its inputs' ``fingerprint`` and the training ``code`` are those of the
    week's ``last`` batch. A group whose training failed then is retried; a group to retrain that
    the last batch trained a model for is skipped (the same inputs and code give the same model),
    its ``candidate`` version carried to the next rerun."""
    if last is None or fingerprint is None or code != last.code:
        return None
    region, fmt, _ = group_inputs.split_group(name)
    if last.fingerprints.get(f"{region}.{fmt}") != fingerprint:
        return None
    if name in last.failed:
        return {"action": "retrain", "reason": f"retrying: training failed in the last batch ({last.failed[name]})"}
    if action == "retrain" and name in last.trained:
        version = last.trained[name]
        reason = f"unchanged since the last batch, which trained v{version} on the same inputs and code"
        return {"action": "skip", "reason": reason, "candidate": version}
    return None
