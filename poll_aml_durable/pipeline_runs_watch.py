"""The durable watch of AML pipeline runs: its HTTP starter, status and cancel routes, the
``watch_pipeline_runs`` orchestrator, its activities (submit, read, cancel), and the Event Grid
function for AML's job events.

The orchestrator is a pure generator that drives the watch's one decision loop
(``shared.watch.loop``) with durable activities and timers: time from the context, no I/O.
Per tick, one activity reads every pending run's status (``shared.watch.reads``); submits go
in chunks; AML's own job events (Event Grid, ``aml_job_event``) wake the watch at once, and
polling stays as the safety net.
"""

import contextlib
import json
import logging

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.Task import TaskState

from poll_aml_durable.names import CANCEL, STATUS, SUBMIT
from shared import clock, http, runtime
from shared.aml import runs
from shared.aml.request import job_name_for
from shared.settings import get_settings
from shared.watch import events, loop, policy, reads
from shared.watch import routes as watch_api

bp = df.Blueprint()
log = logging.getLogger(__name__)

RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=4)
#: runs submitted by one activity: a 500-run batch is 20 activities, not 500
SUBMIT_CHUNK = 25


def _respond(answer: http.Answer) -> func.HttpResponse:
    return func.HttpResponse(**http.response_fields(answer))


@bp.route(route="orchestrations/pipeline-runs", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    call = watch_api.start_watch(
        client,
        req.get_body(),
        runtime.catalog(),
        http.origin(req.url),
        clock.now(),
        req.params.get("code"),
        get_settings().watch_polling(),
    )
    return _respond(await http.guarded_async(call))


@bp.route(route="orchestrations/pipeline-runs/{instance_id}", methods=["GET", "DELETE"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id, base, code = req.route_params["instance_id"], http.origin(req.url), req.params.get("code")
    if req.method == "DELETE":
        return _respond(await http.guarded_async(watch_api.cancel_watch(client, instance_id, base, code)))
    return _respond(await http.guarded_async(watch_api.get_watch(client, instance_id, base, clock.now(), code)))


@bp.route(route="orchestrations/pipeline-runs/{instance_id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_cancel(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id, base, code = req.route_params["instance_id"], http.origin(req.url), req.params.get("code")
    return _respond(await http.guarded_async(watch_api.cancel_watch(client, instance_id, base, code)))


@bp.orchestration_trigger(context_name="context")
def watch_pipeline_runs(context: df.DurableOrchestrationContext):
    given = context.get_input(expected_type=dict) or {}
    state = policy.WatchState.model_validate(given.get("state", given))
    driver = _Driver(context, state)
    steps = loop.steps(state, lambda: context.current_utc_datetime, lambda: driver.cancel.is_completed)
    reply = None
    while True:
        try:
            command = steps.send(reply)
        except StopIteration as end:
            context.set_custom_status(policy.progress(state))
            if not context.is_replaying:
                # like a log line: once, in the episode that ends the watch, never on replay,
                # and it never decides anything (the answer does not depend on it)
                runtime.record_watch(end.value, context.current_utc_datetime)
            return end.value
        if isinstance(command, loop.Renew) and not (yield from driver.cancel_first()):
            context.continue_as_new({"state": command.state.to_input()})
            return None
        reply = True if isinstance(command, loop.Renew) else (yield from driver.answer(command))


class _Driver:
    """How the orchestrator answers the loop's commands, with activities and timers."""

    def __init__(self, context: df.DurableOrchestrationContext, state: policy.WatchState) -> None:
        self.context, self.state = context, state
        # one waiter per event name, renewed only once it fired: a second pending waiter would
        # take the event (the SDK hands it to the newest), and the first would never see it
        self.cancel = context.wait_for_external_event(watch_api.CANCEL_EVENT)
        self.job_event = context.wait_for_external_event(events.JOB_EVENT)

    def answer(self, command: loop.Command):
        if isinstance(command, loop.Submit):
            return (yield from self._submit(command.runs))
        if isinstance(command, loop.Poll):
            return (yield from self._poll(command.runs))
        if isinstance(command, loop.Cancel):
            tasks = [
                self.context.call_activity_with_retry(CANCEL, RETRY, r.run_id, expected_type=dict) for r in command.runs
            ]
            return (yield from _gather(self.context, tasks))
        if isinstance(command, loop.Sleep):
            return (yield from self._sleep(command.until))
        return None

    def _submit(self, runs_: list[policy.RunState]):
        chunks = [runs_[i : i + SUBMIT_CHUNK] for i in range(0, len(runs_), SUBMIT_CHUNK)]
        tasks = [
            self.context.call_activity_with_retry(
                SUBMIT,
                RETRY,
                expected_type=list,
                input_=[
                    {
                        "pipeline": r.pipeline,
                        "parameters": r.parameters,
                        "inputs": r.inputs,
                        # the same key on every retry and replay: AML gets one run per entry
                        "idempotency_key": f"{self.context.instance_id}-{r.index}",
                        # the watch's instance on the job: AML's job events find their way back
                        "watch": self.context.instance_id,
                    }
                    for r in chunk
                ],
            )
            for chunk in chunks
        ]
        outcomes: list[loop.Outcome] = []
        lost: list[policy.RunState] = []
        for chunk, (ok, answer) in zip(chunks, (yield from _gather(self.context, tasks)), strict=True):
            outcomes += [(a["ok"], a["answer"]) for a in answer] if ok else [(False, answer)] * len(chunk)
            if not ok:  # the activity gave up: some of its jobs may exist in AML all the same
                lost += chunk
        if lost:  # best effort: a job nobody follows must not keep AML's compute busy
            jobs = [job_name_for(str(r.pipeline), f"{self.context.instance_id}-{r.index}") for r in lost]
            tasks = [self.context.call_activity_with_retry(CANCEL, RETRY, j, expected_type=dict) for j in jobs]
            for r, (ok, answer) in zip(lost, (yield from _gather(self.context, tasks)), strict=True):
                policy.cancel_answered(r, ok, answer)
        return outcomes

    def _poll(self, runs_: list[policy.RunState]):
        items = [{"run_id": r.run_id, "known": r.aml_status} for r in runs_]
        task = self.context.call_activity_with_retry(STATUS, RETRY, items, expected_type=dict)
        ((ok, answer),) = yield from _gather(self.context, [task])
        if not ok:
            return [(False, answer)] * len(runs_)
        found = [answer.get(str(r.run_id)) or {reads.UNAVAILABLE: "no answer for this run"} for r in runs_]
        return [(False, f[reads.UNAVAILABLE]) if reads.UNAVAILABLE in f else (True, f) for f in found]

    def _sleep(self, until):
        """Wait for the next poll; a job event wakes the watch at once. True when a cancel came."""
        self.context.set_custom_status(policy.progress(self.state))
        timer = self.context.create_timer(until)
        winner = yield self.context.task_any([timer, self.cancel, self.job_event])
        if winner != timer:
            timer.cancel()  # type: ignore[attr-defined]  # a TimerTask, typed by the SDK as TaskBase
        if winner == self.job_event:
            self.job_event = self.context.wait_for_external_event(events.JOB_EVENT)
        return winner == self.cancel

    def cancel_first(self):
        """Before the history goes (continue_as_new): an event delivered in this episode after
        the timer that ended the generation is not seen yet; a timer due now lets it in."""
        if self.cancel.is_completed:
            return True
        drain = self.context.create_timer(self.context.current_utc_datetime)
        if (yield self.context.task_any([drain, self.cancel])) == self.cancel:
            drain.cancel()  # type: ignore[attr-defined]  # a TimerTask, typed by the SDK as TaskBase
            return True
        return False


def _gather(context: df.DurableOrchestrationContext, tasks: list):
    """Each task's outcome, ``(True, result)`` or ``(False, error)``: ``task_all`` fails as
    soon as one task fails, so the others are then awaited one by one, and every run gets its
    own answer (the runs that did start are not lost with the one that failed). An error is
    one line for the client; the activity's own text (its stack trace) goes to the log only."""
    try:
        results = yield context.task_all(tasks)
        return [(True, r) for r in results]
    except Exception:
        pass
    for task in tasks:
        if not task.is_completed:
            with contextlib.suppress(Exception):
                yield task
    outcomes = []
    for task in tasks:
        if task.state is TaskState.SUCCEEDED:
            outcomes.append((True, task.result))
            continue
        if not context.is_replaying:
            log.warning("watch %s: an activity failed: %s", context.instance_id, task.result)
        outcomes.append((False, policy.activity_failure(str(task.result))))
    return outcomes


class ActivityError(Exception):
    """An activity's failure, with the run it concerns in its message (JSON)."""


def _check(answer: http.Answer, what: str, run: str) -> dict:
    status, body, _ = answer
    if status >= 400:
        raise _failure(what, run, status, body)
    return http.json_safe(body)


def _failure(what: str, run: str, status: int, body: dict) -> ActivityError:
    # one line of JSON: what the orchestrator keeps of a failure (policy.activity_failure)
    return ActivityError(json.dumps({"run_id": run, "what": what, "status": status, **body}))


@bp.activity_trigger(input_name="requests")
def aml_submit_runs(requests: list) -> list:
    """Submit a chunk of runs; each run's own outcome (a failed submit is that run's alone)."""
    backend, catalog = runtime.aml_backend(), runtime.catalog()
    outcomes = []
    for request in requests:
        tags = {events.TAG_WATCH: request["watch"]} if request.get("watch") else {}
        body = {
            "parameters": request["parameters"],
            "inputs": request.get("inputs") or {},
            "idempotency_key": request["idempotency_key"],
            "tags": tags,
        }
        answer = runs.submit(backend, catalog, request["pipeline"], json.dumps(body).encode(), "")
        try:
            outcomes.append({"ok": True, "answer": _check(answer, "submit", request["idempotency_key"])})
        except ActivityError as e:
            outcomes.append({"ok": False, "answer": policy.activity_failure(str(e))})
    return outcomes


@bp.activity_trigger(input_name="items")
def aml_runs_status(items: list) -> dict:
    """Every pending run's status in one tick (bounded concurrency)."""
    return reads.read_all(items, reads.from_backend(runtime.aml_backend()))


@bp.activity_trigger(input_name="run_id")
def aml_cancel_run(run_id: str) -> dict:
    """Ask a run to stop. A run AML does not know is an answer (nothing to cancel), not a
    failure: the activity's retries would only ask again for nothing. Any other refusal fails
    the activity, and is retried."""
    try:
        return http.json_safe(loop.cancel_run(runtime.aml_backend(), run_id))
    except loop.CancelRefused as e:
        raise _failure("cancel", run_id, e.status, e.body) from None


@bp.function_name("aml_job_event")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def aml_job_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    """AML's job status events (Event Grid): wake the watch that follows the job at once. An
    event for a job no watch follows, or for a watch that has ended, is ignored."""
    await events.wake(client, event.event_type, event.get_json())
