"""The durable watch: start (or follow) AML pipeline runs and answer ADF when they end.

The orchestrator is a pure generator that drives the watch's one decision loop
(``shared.watch.loop``) with durable activities and timers: time from the context, no I/O;
the activities call the same run API as ``trigger_aml``.
"""

import contextlib
import json
import logging

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.Task import TaskState

from shared import clock, http, runtime
from shared.aml import runs
from shared.watch import http as watch_api
from shared.watch import loop, policy

bp = df.Blueprint()
log = logging.getLogger(__name__)

# activity names, in one place: the SDK schedules an activity by its Python function name
SUBMIT = "aml_submit_run"
STATUS = "aml_run_status"
CANCEL = "aml_cancel_run"
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=4)


def _respond(answer: http.Answer) -> func.HttpResponse:
    return func.HttpResponse(**http.response_fields(answer))


@bp.route(route="orchestrations/pipeline-runs", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    call = watch_api.start_watch(
        client, req.get_body(), runtime.catalog(), http.origin(req.url), clock.now(), req.params.get("code")
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
    # one waiter per generation, raced against every timer: a new waiter per poll would leave
    # the old ones registered, and the SDK hands an event to the newest, losing the cancel
    cancel = context.wait_for_external_event(watch_api.CANCEL_EVENT)
    steps = loop.steps(state, lambda: context.current_utc_datetime, lambda: cancel.is_completed)
    reply = None
    while True:
        try:
            command = steps.send(reply)
        except StopIteration as end:
            context.set_custom_status(policy.progress(state))
            return end.value
        reply = None
        if isinstance(command, loop.Submit):
            tasks = [
                context.call_activity_with_retry(
                    SUBMIT,
                    RETRY,
                    expected_type=dict,
                    input_={
                        "pipeline": r.pipeline,
                        "parameters": r.parameters,
                        # the same key on every retry and replay: AML gets one run per entry
                        "idempotency_key": f"{context.instance_id}-{r.index}",
                    },
                )
                for r in command.runs
            ]
            reply = yield from _gather(context, tasks)
        elif isinstance(command, loop.Poll):
            tasks = [
                context.call_activity_with_retry(STATUS, RETRY, r.run_id, expected_type=dict) for r in command.runs
            ]
            reply = yield from _gather(context, tasks)
        elif isinstance(command, loop.Cancel):
            tasks = [
                context.call_activity_with_retry(CANCEL, RETRY, r.run_id, expected_type=dict) for r in command.runs
            ]
            reply = yield from _gather(context, tasks)
        elif isinstance(command, loop.Sleep):
            context.set_custom_status(policy.progress(state))
            timer = context.create_timer(command.until)
            winner = yield context.task_any([timer, cancel])
            if winner == cancel:
                timer.cancel()  # type: ignore[attr-defined]  # a TimerTask, typed by the SDK as TaskBase
                reply = True
            else:
                reply = False
        elif isinstance(command, loop.Renew):
            # an event delivered in this episode after the timer that ended the generation is
            # not seen yet: a timer due now lets the episode's events in before the history goes
            drain = context.create_timer(context.current_utc_datetime)
            if (yield context.task_any([drain, cancel])) == cancel:
                drain.cancel()  # type: ignore[attr-defined]  # a TimerTask, typed by the SDK as TaskBase
                reply = True
                continue
            context.continue_as_new({"state": command.state.model_dump(mode="json")})
            return None


def _each_run(context: df.DurableOrchestrationContext, activity: str, runs_: list[policy.RunState]):
    tasks = [context.call_activity_with_retry(activity, RETRY, r.run_id, expected_type=dict) for r in runs_]
    return (yield from _gather(context, tasks))


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
        # one line of JSON: what the orchestrator keeps of a failure (policy.activity_failure)
        raise ActivityError(json.dumps({"run_id": run, "what": what, "status": status, **body}))
    return http.json_safe(body)


@bp.activity_trigger(input_name="request")
def aml_submit_run(request: dict) -> dict:
    body = json.dumps({"parameters": request["parameters"], "idempotency_key": request["idempotency_key"]})
    answer = runs.submit(runtime.aml_backend(), runtime.catalog(), request["pipeline"], body.encode(), "")
    return _check(answer, "submit", request["idempotency_key"])


@bp.activity_trigger(input_name="run_id")
def aml_run_status(run_id: str) -> dict:
    return _check(runs.get(runtime.aml_backend(), run_id), "status", run_id)


@bp.activity_trigger(input_name="run_id")
def aml_cancel_run(run_id: str) -> dict:
    return _check(runs.cancel(runtime.aml_backend(), run_id), "cancel", run_id)
