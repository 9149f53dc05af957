"""The durable watch: start (or follow) AML pipeline runs and answer ADF when they end.

The orchestrator is a pure generator over ``shared.watch.policy`` (time from the context, waits on
durable timers, no I/O); the activities call the same run API as ``trigger_aml``.
"""

import contextlib
import datetime as dt
import json

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.Task import TaskState

from shared import runtime
from shared.aml import runs
from shared.watch import http as watch_api
from shared.watch import policy as watch

bp = df.Blueprint()

# activity names, in one place: the SDK schedules an activity by its Python function name
SUBMIT = "aml_submit_run"
STATUS = "aml_run_status"
CANCEL = "aml_cancel_run"
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=4)


def _respond(answer: watch_api.Answer) -> func.HttpResponse:
    status, body, headers = answer
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers, mimetype="application/json")


def _base_url(req: func.HttpRequest) -> str:
    return runs.origin(req.url)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@bp.route(route="orchestrations/pipeline-runs", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return _respond(
        await runs.answer_async(
            watch_api.start_watch(client, req.get_body(), runtime.catalog(), _base_url(req), _now())
        )
    )


@bp.route(route="orchestrations/pipeline-runs/{instance_id}", methods=["GET", "DELETE"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params["instance_id"]
    if req.method == "DELETE":
        return _respond(await runs.answer_async(watch_api.cancel_watch(client, instance_id, _base_url(req))))
    return _respond(await runs.answer_async(watch_api.get_watch(client, instance_id, _base_url(req), _now())))


@bp.route(route="orchestrations/pipeline-runs/{instance_id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def pipeline_runs_watch_cancel(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params["instance_id"]
    return _respond(await runs.answer_async(watch_api.cancel_watch(client, instance_id, _base_url(req))))


@bp.orchestration_trigger(context_name="context")
def watch_pipeline_runs(context: df.DurableOrchestrationContext):
    given = context.get_input(expected_type=dict)
    state = watch.WatchState.model_validate(given.get("state", given))
    # one waiter per generation, raced against every timer: a new waiter per poll would leave
    # the old ones registered, and the SDK hands an event to the newest, losing the cancel
    cancel = context.wait_for_external_event(watch_api.CANCEL_EVENT)
    to_submit = [r for r in state.runs if r.run_id is None and not r.done]
    if to_submit:
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
            for r in to_submit
        ]
        outcomes = yield from _gather(context, tasks)
        for r, (ok, answer) in zip(to_submit, outcomes, strict=True):
            if ok:
                r.run_id, r.portal_url = answer["run_id"], answer.get("portal_url")
            else:
                watch.fail_run(state, r.index, {"message": f"submit failed: {answer}", "code": "submit_failed"})
    polls_at_start = state.polls
    while True:
        now = context.current_utc_datetime
        polled = watch.pending(state)
        tasks = [context.call_activity_with_retry(STATUS, RETRY, r.run_id, expected_type=dict) for r in polled]
        outcomes = yield from _gather(context, tasks)
        for r, (ok, status) in zip(polled, outcomes, strict=True):
            if ok:
                watch.observe(state, r.index, status, now)
            else:
                watch.unavailable(state, r.index, status, now)
        decision = watch.after_poll(state, now)
        if decision == "done":
            watch.finish(state)
            context.set_custom_status(watch.progress(state))
            return watch.result(state)
        if decision == "timed_out" or cancel.is_completed:
            if decision == "timed_out" and not state.options.cancel_on_timeout:
                watch.time_out(state)
            else:
                yield from _cancel_runs(context, state)
                if decision == "timed_out":
                    watch.time_out(state)
                else:
                    watch.cancel_all(state)
            context.set_custom_status(watch.progress(state))
            return watch.result(state)
        fire_at = watch.next_poll(state, now)
        context.set_custom_status(watch.progress(state))
        timer = context.create_timer(fire_at)
        winner = yield context.task_any([timer, cancel])
        if winner == cancel:
            timer.cancel()
            yield from _cancel_runs(context, state)
            watch.cancel_all(state)
            context.set_custom_status(watch.progress(state))
            return watch.result(state)
        if state.polls - polls_at_start >= state.options.polls_per_generation:
            # a fresh history every N polls: a while loop would grow it without bound
            state.generation += 1
            context.continue_as_new({"state": state.model_dump(mode="json")})
            return None


def _gather(context: df.DurableOrchestrationContext, tasks: list):
    """Each task's outcome, ``(True, result)`` or ``(False, error)``: ``task_all`` fails as
    soon as one task fails, so the others are then awaited one by one, and every run gets its
    own answer (the runs that did start are not lost with the one that failed)."""
    if not tasks:
        return []
    try:
        results = yield context.task_all(tasks)
        return [(True, r) for r in results]
    except Exception:
        pass
    for task in tasks:
        if not task.is_completed:
            with contextlib.suppress(Exception):
                yield task
    return [(True, t.result) if t.state is TaskState.SUCCEEDED else (False, str(t.result)) for t in tasks]


def _cancel_runs(context: df.DurableOrchestrationContext, state: watch.WatchState):
    tasks = [
        context.call_activity_with_retry(CANCEL, RETRY, r.run_id, expected_type=dict) for r in watch.pending(state)
    ]
    outcomes = yield from _gather(context, tasks)
    for r, (ok, error) in zip(watch.pending(state), outcomes, strict=True):
        if not ok:
            r.cancel_error = f"cancel failed: {error}"


class ActivityError(Exception):
    """An activity's failure, with the run it concerns in its message (JSON)."""


def _check(answer: runs.Answer, what: str, run: str) -> dict:
    status, body, _ = answer
    if status >= 400:
        raise ActivityError(json.dumps({"run_id": run, "what": what, "status": status, **body}))
    return body


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
