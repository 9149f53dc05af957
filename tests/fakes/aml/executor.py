"""``Executor``: the fake AML runs what it was sent, as AML would, on this machine.

When a pipeline job of one of the catalog's pipelines (its ``forecastops.pipeline`` tag) is submitted to a
``FakeAML(executor=Executor(lake, work))``, a thread runs that pipeline's steps with the local backend's own
planner and runner (:mod:`shared.aml.local.plan`, :mod:`shared.aml.local.runner`), for the request the job body
carries and under the job's name as the run id, against ``lake``:

- the parameters are the job's literal inputs; a data input is its ``uri``: a lake datastore's URI
  (``azureml://datastores/lake_<container>/paths/...``) is read from the lake, a registered data asset
  (its ARM id, or ``azureml:<name>:<version>``) resolves through the workspace's data assets (the fake's
  ``data``) to the URI it was registered with, as AML resolves it; anything else fails the job;
- each step runs the repo's component file for the component the job names, provided that the version the job
  pinned was registered with the same command (otherwise the job fails: AML would run another script);
- each step's outputs are written where the job body puts them (their ``uri``, a lake datastore's URI), as AML
  writes a step's outputs to their datastore; an output with no such URI is not written anywhere;
- the job goes Running, each step's child run Running then Completed (or Failed with the step's error, the
  later steps Canceled), the job Completed or Failed; each step's metrics are set on its child run's MLflow run,
  where the ``azureml`` backend reads AML's; a cancel of the job stops the running step.

Every change to the fake is made under the fake's lock, as a request's would be. What AML would not run
(:class:`JobRefused`) fails the job; so does what went wrong in the executor itself (a crash), which is also
kept in ``errors``.
"""

from __future__ import annotations

import copy
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import ROOT
from shared.aml.catalog import Pipeline, load_catalog
from shared.aml.lakeuri import lake_path
from shared.aml.local.plan import Step, plan
from shared.aml.local.runner import Runner
from shared.aml.request import RunRequest
from shared.lake import Lake
from tests.fakes.aml.contract import TERMINAL_STATUSES, now_iso

if TYPE_CHECKING:
    from tests.fakes.aml.fake import FakeAML

__all__ = ["Executor", "JobRefused"]

TAG_PIPELINE = "forecastops.pipeline"
_DATA_ID = re.compile(r"/data/([^/]+)/versions/([^/]+)$")
_DATA_REF = re.compile(r"^azureml:([^:/]+):([^:/]+)$")
_COMPONENT_ID = re.compile(r"/components/([^/]+)/versions/([^/]+)$")


class JobRefused(Exception):
    """What AML would refuse about a job (an input it cannot resolve, a component it would not run)."""


class Executor:
    """Runs the pipeline jobs a ``FakeAML`` is sent (see the module). ``ran``: job name -> the steps run, in
    order; ``errors``: what went wrong in the executor itself (a test asserts it stays empty)."""

    def __init__(self, lake: Lake, work: Path) -> None:
        self.lake = lake
        self.work = Path(work)
        self.ran: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self._threads: dict[str, threading.Thread] = {}

    # ------------------------------------------------------------------ the fake's hook
    def submitted(self, fake: FakeAML, name: str) -> None:
        """A job was created (called by the fake, under its lock): a catalog pipeline's job starts running."""
        tags = fake.jobs[name]["body"]["properties"].get("tags") or {}
        if tags.get(TAG_PIPELINE) not in load_catalog():
            return
        thread = threading.Thread(target=self._run, args=(fake, name), name=f"fake-aml-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def wait(self, timeout: float = 600.0) -> None:
        """Until every job started so far has ended (``TimeoutError`` otherwise)."""
        for name, thread in list(self._threads.items()):
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the fake AML's job {name} is still running after {timeout} s")

    # ------------------------------------------------------------------ one job
    def _run(self, fake: FakeAML, name: str) -> None:
        with fake._lock:
            props = copy.deepcopy(fake.jobs[name]["body"]["properties"])
        try:
            pipeline, request = self._request(fake, props)
            work = self.work / name
            steps = plan(pipeline, request, self.lake, work)
            self._check_steps(fake, pipeline, props, steps)
        except JobRefused as e:
            self._end(fake, name, "Failed", message=str(e))
            return
        except Exception as e:  # the planner's own refusals (an input it cannot read) and crashes alike
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
            self._end(fake, name, "Failed", message=f"the pipeline could not be prepared: {e}")
            return
        runner = _StepRunner(self, fake, name, work, props)
        self.ran[name] = []
        with fake._lock:
            fake._set_status(name, "Running")
        try:
            self._steps(fake, name, runner, steps, request)
        except Exception as e:
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
            self._end(fake, name, "Failed", message=f"the fake AML's executor crashed: {e!r}")

    def _steps(self, fake: FakeAML, name: str, runner: _StepRunner, steps: list[Step], request: RunRequest) -> None:
        failed: tuple[str, str] | None = None
        for i, step in enumerate(steps):
            if runner.cancel_requested():
                self._end(fake, name, "Canceled")
                return
            self.ran[name].append(step.name)
            outcome = runner._run_step(i, step)
            with fake._lock:
                child = fake.child_run(name, step.name)
                fake.set_metrics(child["runId"], runner.status["metrics"].get(step.name) or {})
            if outcome == "Canceled":
                self._end(fake, name, "Canceled")
                return
            if outcome == "Failed" and failed is None:
                failed = (step.name, str(runner.status["steps"][i].get("error") or "the step failed"))
                if not request.continue_on_step_failure:
                    break
        if failed is not None:
            self._end(fake, name, "Failed", step=failed[0], message=failed[1])
        else:
            self._end(fake, name, "Completed")

    def _end(self, fake: FakeAML, name: str, status: str, step: str | None = None, message: str = "") -> None:
        with fake._lock:
            if fake.jobs[name]["body"]["properties"]["status"] in TERMINAL_STATUSES:
                return  # canceled meanwhile: AML keeps the first end
            if status == "Failed":
                fake.fail(name, step=step, message=message)
            else:
                fake._set_status(name, status)

    # ------------------------------------------------------------------ reading the job
    def _request(self, fake: FakeAML, props: dict[str, Any]) -> tuple[Pipeline, RunRequest]:
        """The catalog pipeline and the request the job body carries."""
        tags = dict(props.get("tags") or {})
        pipeline = load_catalog()[tags[TAG_PIPELINE]]
        parameters: dict[str, Any] = {}
        inputs: dict[str, str] = {}
        for key, spec in (props.get("inputs") or {}).items():
            if spec.get("jobInputType") == "literal":
                parameters[key] = spec.get("value")
            elif spec.get("uri"):
                inputs[key] = self._resolve(fake, key, str(spec["uri"]))
            else:
                raise JobRefused(f"input {key}: neither a value nor a uri ({spec})")
        settings = props.get("settings") or {}
        request = RunRequest(
            pipeline=pipeline.name,
            parameters=parameters,
            inputs=inputs,
            experiment=str(props.get("experimentName") or pipeline.experiment),
            idempotency_key=tags.get("forecastops.idempotency_key"),
            tags=tags,
            continue_on_step_failure=bool(settings.get("continue_on_step_failure")),
        )
        return pipeline, request

    def _resolve(self, fake: FakeAML, key: str, uri: str) -> str:
        """A data input's URI as the lake URI it reads: a registered data asset through the workspace's data
        assets; a lake datastore's URI as it is; anything else is not readable here."""
        found = _DATA_ID.search(uri) or _DATA_REF.match(uri)
        if found is not None:
            name, version = found.groups()
            with fake._lock:
                asset = fake.data.get(name, {}).get(version)
            if asset is None:
                raise JobRefused(f"input {key}: data asset {name}:{version} is not registered in the workspace")
            uri = str(asset["properties"]["dataUri"])
        if lake_path(uri) is None:
            raise JobRefused(f"input {key}: {uri} is not in a datastore of the lake")
        return uri

    def _check_steps(self, fake: FakeAML, pipeline: Pipeline, props: dict[str, Any], steps: list[Step]) -> None:
        """The job's steps are the local plan's, and each names a registered version of the component the plan
        runs, with the command of the repo's component file (the fake runs the repo's file)."""
        import yaml

        jobs = props.get("jobs") or {}
        if [s.name for s in steps] != list(jobs):
            raise JobRefused(f"the job's steps {list(jobs)} are not the pipeline's {[s.name for s in steps]}")
        local = pipeline.local
        assert local is not None  # plan() refuses a pipeline without one
        with open(ROOT / local.job, encoding="utf-8") as f:
            local_job = yaml.safe_load(f)
        for step, node in jobs.items():
            m = _COMPONENT_ID.search(str(node.get("componentId") or ""))
            if m is None:
                raise JobRefused(f"step {step}: no registered component ({node.get('componentId')})")
            name, version = m.groups()
            wanted = str(local_job["jobs"][step]["component"]).split(":")[1]
            if name != wanted:
                raise JobRefused(f"step {step}: the job runs component {name}, the pipeline {wanted}")
            with fake._lock:
                registered = fake.components.get(name, {}).get(version)
            if registered is None:
                raise JobRefused(f"step {step}: component {name}:{version} is not registered")
            with open(ROOT / local.components[name], encoding="utf-8") as f:
                repo = yaml.safe_load(f)
            spec = registered["properties"]["componentSpec"]
            # a command component runs its command; a parallel one its task's entry script and arguments
            if repo.get("type") == "parallel":
                task, theirs = repo.get("task") or {}, spec.get("task") or {}
                runs = [task.get(k) for k in ("entry_script", "program_arguments")]
                same = runs == [theirs.get(k) for k in ("entry_script", "program_arguments")]
            else:
                same = spec.get("command") == repo["command"]
            if not same:
                raise JobRefused(f"step {step}: {name}:{version} was registered to run other code than the repo's")


class _StepRunner(Runner):
    """The local runner's step loop (:meth:`Runner._run_step`: the subprocess, its metrics file, a cancel
    stopping it), reporting to the fake job's child runs instead of ``runs/<id>/status.json``, and writing
    each step's outputs where the job body placed them instead of the runner's own lake folders."""

    def __init__(self, executor: Executor, fake: FakeAML, name: str, work: Path, props: dict[str, Any]) -> None:
        super().__init__(executor.lake, name, work)
        self.fake = fake
        self.props = props
        self.status["steps"] = [
            {"name": step, "aml_status": "NotStarted", "status": "queued", "started_at": None, "ended_at": None}
            for step in props.get("jobs") or {}
        ]

    def save(self) -> None:
        """Each step's status onto its child run, as AML's Run History shows it."""
        with self.fake._lock:
            for step in self.status["steps"]:
                child = self.fake.child_run(self.run_id, step["name"])
                if child["status"] in TERMINAL_STATUSES or child["status"] == step["aml_status"]:
                    continue
                if step["aml_status"] == "NotStarted":
                    continue
                child["status"] = step["aml_status"]
                if step["aml_status"] == "Running":
                    child["startTimeUtc"] = child["startTimeUtc"] or now_iso()
                else:
                    child["endTimeUtc"] = now_iso()
                if step["aml_status"] == "Failed":
                    child["error"] = self.fake._error_response("UserError", step.get("error") or "failed", step["name"])
                self.fake._set_mlflow_status(child["runId"], child["status"])

    def cancel_requested(self) -> bool:
        with self.fake._lock:
            return self.fake.jobs[self.run_id]["body"]["properties"]["status"] in ("CancelRequested", "Canceled")

    def _publish(self, step: Step, log_file: Path) -> None:
        """The step's outputs to the lake paths of their URIs in the job body (the log stays with the job)."""
        placed = (self.props.get("jobs") or {}).get(step.name, {}).get("outputs") or {}
        for output, folder in step.outputs.items():
            uri = (placed.get(output) or {}).get("uri")
            target = lake_path(str(uri)) if uri else None
            if target is None:
                continue  # AML's own default storage: not the lake
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                with open(file, "rb") as f:
                    self.lake.upload(f"{target}/{file.relative_to(folder).as_posix()}", f)
