"""The weekly batch's steps (:data:`shared.mlops.batch.STEPS`): what each does with the lake, the
model registry and the data catalog. Each takes and returns JSON (an activity's payload), and
each may run twice (an activity retried) with the same result: a model registered from a run
is found again by its run, not registered twice; files are written whole.

Records in the lake (``batches/week=<W>/``): ``plan.json``, ``waiting.json`` (the week's data
was not complete: which sources are missing), ``production/<plan time>/`` (the production
models handed to the scoring run) and ``summary.json`` (a staleness retrain of the same week:
``plan-stale-<id>.json``, ``summary-stale-<id>.json``); the forecasts go to
``curated/forecasts/v1/week=<W>/<group>.csv``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from typing import Any

from shared.aml.lakeuri import lake_uri
from shared.clock import iso
from shared.lake import LakeError
from shared.mlops import failures, pinned, staleness
from shared.mlops import inputs as group_inputs
from shared.mlops.batch import DATA_ASSET, BatchInput, batch_path, instance_id_for
from shared.mlops.cards import NAME_PATTERN, Metrics, ModelCard, TrainingCode
from shared.mlops.context import FORECASTS, SOURCES, VELOCITIES, Context, batch_record, watch_options, write_json
from shared.mlops.data_assets import DataCatalogError, DataVersionNotFound, NothingPinned
from shared.mlops.promotion import age_days, gate_problems
from shared.mlops.publish import publish, record
from shared.mlops.registry import MLMODEL, RegistryError, review
from shared.weeks import StoreMaster, readiness, store_master

log = logging.getLogger(__name__)

#: changed files named in a reason; the rest are counted
_NAMED = 2


def _stale_days(ctx: Context) -> float:
    """The age beyond which a production model is stale (:func:`shared.mlops.staleness.limit`)."""
    return staleness.limit(ctx.gates)


# --- plan ----------------------------------------------------------------------------------------
def plan(ctx: Context, payload: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Is the week ready, which data version, and which groups to retrain (and why)."""
    inp = BatchInput.model_validate(payload)
    ready = readiness(ctx.lake, inp.week)
    base: dict[str, Any] = {
        "week": inp.week,
        "by": inp.by,
        "instance": instance_id_for(inp),
        "started_at": iso(now),
        "missing": list(ready.missing),
        "gaps": {dataset: list(regions) for dataset, regions in ready.gaps.items()},
        "partial": bool(ready.missing),
        "watch": ctx.watch or {},
    }
    if ready.missing and not inp.partial:
        reason = f"{ready.describe()}: waiting for the data"
        waiting = base | {"status": "waiting_for_data", "reason": reason}
        write_json(ctx.lake, batch_path(inp.week, "waiting.json"), waiting)
        log.warning("weekly batch %s: %s", inp.week, reason)
        return waiting
    # a record that does not read costs its own group or file, never the plan: each is named here
    problems: dict[str, str] = {}
    # the manifests read are those new or changed since the last plan (inputs' cache)
    manifests: dict[str, int] = {}
    files = group_inputs.curated_files(ctx.lake, skipped=problems, counts=manifests)
    if not files:
        reason = f"no curated file at all for the week of {inp.week}: nothing to train on"
        return base | {"status": "waiting_for_data", "reason": reason}
    stores = store_master(ctx.lake)
    # a file that cannot be pinned (re-ingested since its manifest, or gone) is left out of the
    # version, named in problems; the groups train on what was pinned
    unpinned: dict[str, str] = {}
    try:
        version = ctx.data.register(DATA_ASSET, inp.week, {f.path: f.sha256 for f in files}, skipped=unpinned)
    except NothingPinned as e:
        problems.update({path: f"{why}: left out" for path, why in unpinned.items()})
        return base | {"status": "waiting_for_data", "reason": str(e), "problems": problems}
    problems.update({path: f"{why}: left out of data version {version.version}" for path, why in unpinned.items()})
    kept = [f for f in files if f.path in version.files]
    # the store master is every group's, and no run trains without shipments: wait for those
    if needed := pinned.needed_but_left_out(files, kept, unpinned):
        reason = f"{needed} could not be pinned (rewritten or gone since its manifest): waiting for the data"
        return base | {"status": "waiting_for_data", "reason": reason, "problems": problems}
    files = kept
    pairs = sorted(stores.pairs())
    fingerprints = {
        f"{r}.{fmt}": group_inputs.fingerprint(group_inputs.group_files(f"{r}.{fmt}.x", files, stores))
        for r, fmt in pairs
    }
    # a batch of a week that had one (a rerun): retry what failed then, skip what it trained
    last = failures.last_batch(ctx.lake, batch_record(base, "summary"))
    groups = _decide_groups(ctx, inp, files, stores, fingerprints, now, problems, last)
    retrain = [g for g, d in groups.items() if d["action"] == "retrain"]
    known = {n for n in ctx.registry.names() if re.match(NAME_PATTERN, n)}
    # nothing registered yet (the first batch): every group the data has, whatever it is called
    train: str | list[str] = "all" if not known else retrain
    result = base | {
        "status": "ready",
        "data": {
            "name": version.name,
            "version": version.version,
            "reference": version.reference,
            "content_hash": version.content_hash,
            "files": len(version.files),
            "pinned": version.pinned,
            "manifests": manifests,
        },
        "fingerprints": fingerprints,
        "groups": groups,
        "train": train,
        "train_inputs": dict(ctx.train_inputs or {}),
        # the code the training run is submitted with: the register step records it on each card
        "code": ctx.code.model_dump(mode="json") if ctx.code else None,
        "problems": problems,
    }
    for where, problem in problems.items():
        log.warning("weekly batch %s: %s: %s", inp.week, where, problem)
    if ready.missing:
        result["reason"] = f"trained on what is there: {ready.describe()}"
    if unpinned:  # the groups whose files were left out train and score on less than the lake has
        result["partial"] = True
        left = f"{len(unpinned)} file(s) left out of the data version (see problems)"
        result["reason"] = (
            f"{result['reason']}; {left}" if result.get("reason") else f"trained on what was pinned: {left}"
        )
    write_json(ctx.lake, batch_record(result, "plan"), result)
    return result


def _decide_groups(
    ctx: Context,
    inp: BatchInput,
    files: list[group_inputs.CuratedFile],
    stores: StoreMaster,
    fingerprints: dict[str, str],
    now: dt.datetime,
    problems: dict[str, str],
    last: failures.LastBatch | None = None,
) -> dict[str, dict[str, Any]]:
    names = _model_names(ctx, problems)
    if last is not None:  # a group that failed in its first batch has no model: the registry lacks it
        names.update(g for g in last.failed if re.match(NAME_PATTERN, g) and _pair(g) in fingerprints)

    # a region and format the store master has and no model covers yet: both velocities are new
    for pair in fingerprints:
        if not any(n.startswith(f"{pair}.") for n in names) and names:
            names.update(f"{pair}.{v}" for v in VELOCITIES)
    force = (inp.retrain or ctx.retrain) == "all"
    decided: dict[str, dict[str, Any]] = {}
    # the data versions production models were trained on, each read once (a record lists
    # every curated file: many groups share one)
    before: dict[str, dict[str, str] | str | None] = {}
    for name in sorted(names):
        region, fmt, _ = group_inputs.split_group(name)
        fp = fingerprints.get(f"{region}.{fmt}")
        production, unreadable = _production(ctx, name, problems)
        if fp is None:
            action, reason = "skip", "no store of this region and format in the store master: nothing to train on"
        elif force:
            action, reason = "retrain", "every group is retrained (retrain=all)"
        elif name in inp.groups:
            action, reason = "retrain", f"asked by the {inp.by.replace('_', ' ')} check"
        elif unreadable is not None:
            action, reason = "retrain", unreadable
        elif production is None:
            action, reason = "retrain", "no production model"
        else:
            action, reason = _against_production(ctx, production, name, fp, files, stores, before, now)
        pv = production.version if production else None
        decided[name] = {"action": action, "reason": reason, "fingerprint": fp, "production_version": pv}
        if fp is not None and not force and name not in inp.groups and unreadable is None:
            code = ctx.code.version if ctx.code else None
            decided[name] |= failures.on_rerun(last, name, fp, code, action) or {}
    return decided


def _pair(group: str) -> str:
    region, fmt, _ = group_inputs.split_group(group)
    return f"{region}.{fmt}"


def _against_production(
    ctx: Context,
    production: ModelCard,
    name: str,
    fp: str,
    files: list[group_inputs.CuratedFile],
    stores: StoreMaster,
    before: dict[str, dict[str, str] | str | None],
    now: dt.datetime,
) -> tuple[str, str]:
    """Retrain or skip a group that has a production model, and why: it is stale, it was trained
    by other code, or on other inputs (the fingerprint ``fp`` of the group's curated files)."""
    pv = production.version
    age = age_days(production, now)
    if age > _stale_days(ctx):
        return "retrain", f"production v{pv} is {age:.0f} days old (stale: over {_stale_days(ctx):.0f})"
    if ctx.code is not None and _code_of(production) != ctx.code.version:
        return "retrain", _code_changed(production, ctx.code)
    if production.data_versions.get("inputs") != fp:
        return "retrain", f"inputs changed since v{pv}: {_changed(ctx, production, name, files, stores, before)}"
    return "skip", f"inputs unchanged since v{pv} (trained {age:.0f} days ago)"


def _code_of(card: ModelCard) -> str:
    """The version of the code that trained ``card``: ``unknown`` for a card registered before the
    code was recorded (retrained once, so that every production model's code is known)."""
    return card.code.version if card.code is not None else "unknown"


def _code_changed(production: ModelCard, code: TrainingCode) -> str:
    """Why a group trained by other code retrains: ``training code changed: <old> -> <new>``, and
    which components differ (or that the old code was not recorded)."""
    reason = f"training code changed: {_code_of(production)} -> {code.version}"
    if production.code is None:
        return f"{reason} (v{production.version} was registered before the code was recorded)"
    old = production.code.components
    moved = sorted(n for n in code.components.keys() | old.keys() if old.get(n) != code.components.get(n))
    return f"{reason} ({', '.join(moved)})" if moved else reason


def _model_names(ctx: Context, problems: dict[str, str]) -> set[str]:
    """The registry's model names; what its home holds beside them (a stray file or folder) is
    named in ``problems`` and ignored."""
    for stray in ctx.registry.strays():
        problems[stray] = (
            "not a model (<region>.<format>.<velocity> with a version): a stray entry in the registry, ignored"
        )
    return {name for name in ctx.registry.names() if re.match(NAME_PATTERN, name)}


def _production(ctx: Context, name: str, problems: dict[str, str]) -> tuple[ModelCard | None, str | None]:
    """``name``'s production model, and why it is retrained when its record does not read (a
    corrupt pointer or card, named in ``problems``: the group falls back until it retrains)."""
    try:
        return ctx.registry.production(name), None
    except RegistryError as e:
        problems[name] = str(e)
        return None, f"its production model is not readable ({e}): retrained"


def _changed(
    ctx: Context,
    production: ModelCard,
    name: str,
    files: list[group_inputs.CuratedFile],
    stores: StoreMaster,
    read: dict[str, dict[str, str] | str | None],
) -> str:
    """Which of the group's files are new or changed since the data its model was trained on
    (``read``: the data versions read so far, by version)."""
    _, _, version = production.data_versions.get("curated", "").rpartition(":")
    if version not in read:
        try:
            read[version] = ctx.data.get(DATA_ASSET, version).files if version else None
        except DataVersionNotFound:  # an outage is not "unknown": it fails the step, which is retried
            read[version] = None
        except DataCatalogError as e:  # a corrupt record costs the groups trained on it
            log.warning("weekly batch: %s", e)
            read[version] = "unreadable"
    before = read[version]
    if before is None:
        return "its data version is not known"
    if isinstance(before, str):
        return "its data version record is not readable"
    changed = [f.path for f in group_inputs.group_files(name, files, stores) if before.get(f.path) != f.sha256]
    if not changed:
        gone = len(before.keys() - {f.path for f in files})
        return f"{gone} file(s) removed" if gone else "its files are the same, their fingerprint is not"
    shown = ", ".join(p.rsplit("/", 1)[-1] for p in changed[:_NAMED])
    more = f" and {len(changed) - _NAMED} more" if len(changed) > _NAMED else ""
    return f"{len(changed)} file(s) new or changed ({shown}{more})"


# --- register --------------------------------------------------------------------------------------
def register(ctx: Context, payload: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Every model the training run produced, registered and reviewed (promoted or kept)."""
    plan, train = payload["plan"], payload.get("train")
    if train is None:
        return {"trained": False, "groups": {}}
    if train.get("outcome") not in ("completed", "gate_failed"):
        error = train.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        return {
            "trained": False,
            "error": f"the training run {train.get('run_id')} ended {train.get('outcome')}: {message}",
            "groups": {},
        }
    run_id = str(train["run_id"])
    # a run that read data other than the plan's version (a listing rewritten since): nothing registered
    other = pinned.read_other_data(ctx.lake, run_id, plan["data"])
    if other is not None:
        return {"trained": False, "error": other, "groups": {}}
    metrics = model_metrics(train.get("metrics") or {})
    models = f"runs/{run_id}/outputs/train/models"
    listed = list(ctx.lake.list(models))
    top = [p.removeprefix(f"{models}/") for p in listed]
    present = {name for name in top if "/" not in name}  # the files at the top (an MLflow model's are below)
    booster: dict[str, bytes] = {
        name: ctx.lake.read_bytes(f"{models}/{name}") for name in ("lgbm.txt", "lgbm.json") if name in present
    }
    data = plan["data"]
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(metrics):
        if not re.match(NAME_PATTERN, group) or f"{group}.pkl" not in present:
            continue
        files = _model_files(ctx, models, group, listed, booster)
        out[group] = _register_one(ctx, plan, run_id, group, metrics[group], files, now)
    ctx.data.link_run(DATA_ASSET, data["version"], run_id, "train")
    # the groups it trained no model for, and why: the summary lists them, a rerun retries them
    failed, left_out = failures.untrained(ctx.lake, models, plan.get("train"))
    # after the decisions: a retried step prunes again and finds nothing more to archive
    archived: dict[str, list[int]] = {}
    archive_failed: dict[str, str] = {}
    for group in (g for g, r in out.items() if r.get("registered")):
        try:
            gone = ctx.registry.prune(group, ctx.versions_kept)
        except (LakeError, RegistryError) as e:  # housekeeping: the models stay registered and decided
            archive_failed[group] = _one_line(e)
            log.warning(
                "weekly batch: %s: pruning failed (the next batch prunes again): %s", group, archive_failed[group]
            )
            continue
        if gone:
            archived[group] = gone
    return {
        "trained": True,
        "run_id": run_id,
        "groups": out,
        "archived": archived,
        "archive_failed": archive_failed,
        "failed": {g: r for g, r in failed.items() if g not in out},
        "left_out": left_out,
    }


def _one_line(e: Exception) -> str:
    """An error's first line (a service's message may run on for lines)."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return first[:300]


def model_metrics(by_step: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A run's metrics as the watch reports them (per step, ``<group>.<metric>``) per model."""
    models: dict[str, dict[str, Any]] = {}
    for values in by_step.values():
        for name, value in (values or {}).items():
            group, _, metric = str(name).rpartition(".")
            if re.match(NAME_PATTERN, group):
                models.setdefault(group, {})[metric] = value
    return models


def _model_files(
    ctx: Context, models: str, group: str, listed: list[str], booster: dict[str, bytes]
) -> dict[str, bytes]:
    """A group's model version as files: the MLflow model train wrote (``mlflow/<group>/``, every
    file under its own relative name, ``MLmodel`` at the top), or, from a run that wrote none (trained
    before the models were MLflow models), its pickle as ``model.pkl`` and the run's booster."""
    folder = f"{models}/mlflow/{group}/"
    # a model loaded where it lies leaves Python's byte code beside its code: not the model's
    names = [p[len(folder) :] for p in listed if p.startswith(folder) and "/__pycache__/" not in p]
    if MLMODEL in names:
        return {name: ctx.lake.read_bytes(folder + name) for name in names}
    return {"model.pkl": ctx.lake.read_bytes(f"{models}/{group}.pkl"), **booster}


def _register_one(
    ctx: Context,
    plan: dict[str, Any],
    run_id: str,
    group: str,
    measured: dict[str, Any],
    files: dict[str, bytes],
    now: dt.datetime,
) -> dict[str, Any]:
    trained_at = measured.get("trained_at")
    if not isinstance(trained_at, int | float) or not math.isfinite(trained_at):
        return {"registered": False, "reason": "the run reported no trained_at for it: not registered"}
    region, fmt, _ = group_inputs.split_group(group)
    # a retried step finds the version it registered from this run, and its decision
    card = next((c for c in ctx.registry.versions(group) if c.run_id == run_id), None)
    if card is not None and card.decision is None:
        ctx.registry.restore_files(card, files)  # the registration may have died before its files
    if card is None:
        card = ctx.registry.register(
            ModelCard(
                name=group,
                metrics=Metrics(**{k: measured.get(k) for k in Metrics.model_fields}),
                trained_at=float(trained_at),
                run_id=run_id,
                data_versions={
                    "curated": plan["data"]["reference"],
                    "curated_hash": plan["data"]["content_hash"],
                    "inputs": plan["fingerprints"].get(f"{region}.{fmt}", ""),
                },
                code=TrainingCode.model_validate(plan["code"]) if plan.get("code") else None,
                week=plan.get("week"),
            ),
            files,
        )
    version = int(card.version or 0)
    decision = card.decision
    if decision is None:
        decision = review(ctx.registry, group, version, ctx.gates, now, ctx.margin, _stale_days(ctx))
    return {
        "registered": True,
        "version": version,
        "mape": card.metrics.mape,
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
    }


# --- production --------------------------------------------------------------------------------------
def production(ctx: Context, payload: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The production models, copied where the scoring run reads them, with ``production.json``;
    beside each, in ``<group>/previous/``, the previous production version when it still passes
    the gates (the first fallback of the score step's chain; the group's baseline is the last)."""
    plan = payload["plan"]
    week = plan["week"]
    # one folder per plan: a scoring run never reads a folder another batch is rewriting
    stamp = re.sub(r"[^0-9]", "", str(plan.get("started_at") or "")) or "0"
    folder = batch_path(week, f"production/{stamp}")
    models: dict[str, dict[str, Any]] = {}
    for card in ctx.registry.production_models():
        version = int(card.version or 0)
        _copy_model(ctx, card, f"{folder}/{card.name}")
        models[card.name] = {
            "name": card.name,
            "version": version,
            "trained_at": card.trained_at,
            "stale": age_days(card, now) > _stale_days(ctx),
        }
        previous = _previous(ctx, card, now)
        if previous is not None:
            _copy_model(ctx, previous, f"{folder}/{card.name}/previous")
            models[card.name]["previous"] = {"version": int(previous.version or 0), "trained_at": previous.trained_at}
    write_json(ctx.lake, f"{folder}/production.json", {"week": week, "models": models})
    return {"uri": lake_uri(folder), "models": models}


def _copy_model(ctx: Context, card: ModelCard, where: str) -> None:
    for file_name in card.files:
        data = ctx.registry.read_file(card.name, int(card.version or 0), file_name)
        ctx.lake.write_bytes(f"{where}/{file_name}", data)


def _previous(ctx: Context, current: ModelCard, now: dt.datetime) -> ModelCard | None:
    """The version that served before ``current`` (the one its promotion retired: one read, however
    long the group's history), if it still passes the gates (a model that fails them is never served)."""
    before = current.decision.production_version if current.decision else None
    if before is None or before == current.version:
        return None
    try:
        last = ctx.registry.get(current.name, before)
    except RegistryError as e:  # gone or unreadable: the baseline serves behind production instead
        log.warning("weekly batch: the version before %s v%s: %s", current.name, current.version, e)
        return None
    if last.stage != "retired":
        return None
    return None if gate_problems(last, ctx.gates, now) else last


STEP_FUNCTIONS = {"plan": plan, "register": register, "production": production, "publish": publish, "record": record}


def run_step(ctx: Context, step: str, payload: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """One step by name (the orchestrator's one activity, and the command line)."""
    if step not in STEP_FUNCTIONS:
        raise ValueError(f"no batch step {step!r}")
    return STEP_FUNCTIONS[step](ctx, payload, now)


__all__ = ["FORECASTS", "SOURCES", "VELOCITIES", "Context", "publish", "record", "run_step", "watch_options"]
