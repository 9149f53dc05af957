"""The weekly batch (new data -> retrain what changed -> gate -> promote -> score with
production): the ``weekly_batch`` orchestrator, its ``batch_step`` activity, and its three entry
points: ADF by HTTP, the data-complete queue message, and the weekly schedule. Its pipeline runs
are sub-orchestrations of the watch (:mod:`poll_aml_durable.pipeline_runs_watch`).
"""

import contextlib
import logging

import azure.durable_functions as df
import azure.functions as func

from poll_aml_durable.names import BATCH_STEP, WATCH
from shared import clock, http, runtime
from shared.mlops import batch, start
from shared.settings import get_settings
from shared.watch import policy

bp = df.Blueprint()
log = logging.getLogger(__name__)

#: a batch step outlives a short outage of the lake or the registry: 8 attempts, 30 s apart
BATCH_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=8)


def _respond(answer: http.Answer) -> func.HttpResponse:
    return func.HttpResponse(**http.response_fields(answer))


@bp.route(route="batches/{week}", methods=["POST", "GET"])
@bp.durable_client_input(client_name="client")
async def weekly_batch_http(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """ADF's entry: POST starts the week's batch (once; body optional: ``partial``, ``retrain``),
    GET answers its state (202 running, 200 done, 502 failed, 200 waiting_for_data)."""
    week, base, code = req.route_params["week"], http.origin(req.url), req.params.get("code")
    if req.method == "GET":
        return _respond(await http.guarded_async(start.batch_status(client, runtime.lake(), week, base, code)))
    inp, refused = start.parse_start(week, req.get_body(), "http")
    if inp is None:
        return _respond(refused or http.error(400, "invalid_request", "the request was refused"))
    answer = start.start_batch(client, runtime.lake(), inp, base, clock.now(), code)
    return _respond(await http.guarded_async(answer))


@bp.route(route="lineage/{*thing}", methods=["GET"])
def lineage_http(req: func.HttpRequest) -> func.HttpResponse:
    """The lineage of a forecast, a model, a data version, a curated file or a run, both ways
    (``shared.mlops.lineage``): 200, or 404 with one line for a thing it does not know."""
    from shared.mlops import lineage

    thing = req.route_params.get("thing") or ""

    def answer() -> http.Answer:
        records = lineage.Sources(runtime.lake(), runtime.registry(), runtime.data_catalog())
        return lineage.answer(records, thing)

    return _respond(http.guarded(answer))


@bp.function_name("weekly_batch_queue")
@bp.queue_trigger(arg_name="msg", queue_name="%FORECASTOPS_BATCH_QUEUE%", connection="LAKE_STORAGE")
@bp.durable_client_input(client_name="client")
async def weekly_batch_queue(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """An ingest app announced a week whose data is complete (or the staleness check asks for
    a retrain at once): start that week's batch, once. A message that is not a start raises,
    and after the host's retries lands in the poison queue, where it can be read."""
    try:
        message = msg.get_json()
    except RecursionError:  # nested deeper than the JSON reader goes: never a start
        log.warning("weekly batch message %s refused: its JSON is nested too deep", msg.id)
        raise ValueError("a batch message is a JSON object with a week, not a deeply nested document") from None
    if not isinstance(message, dict):
        raise ValueError("a batch message is a JSON object with a week")
    # what the announcer adds for people (when, which raw file) is not part of the start
    inp = batch.BatchInput.model_validate({k: v for k, v in message.items() if k in batch.BatchInput.model_fields})
    status, body, _ = await start.start_batch(client, runtime.lake(), inp, "", clock.now())
    if body.get("started") is False:  # the week has its batch (running, or ended: failed too)
        log.info("weekly batch %s: %s already has its batch (%s)", inp.week, body.get("instance_id"), status)
    elif status >= 400:
        log.warning("weekly batch %s not started (%s): %s", inp.week, body.get("error"), body.get("message"))


@bp.function_name("weekly_batch_schedule")
@bp.timer_trigger(arg_name="timer", schedule="%FORECASTOPS_BATCH_SCHEDULE%")
@bp.durable_client_input(client_name="client")
async def weekly_batch_schedule(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """The weekly fallback: the last finished week's batch, if its data never completed it."""
    partial = get_settings().batch_incomplete == "partial"
    await start.schedule_batch(client, runtime.lake(), partial, clock.now())


@bp.orchestration_trigger(context_name="context")
def weekly_batch(context: df.DurableOrchestrationContext):
    """The batch's one sequence (``shared.mlops.batch.steps``): its steps as one activity,
    its pipeline runs as sub-orchestrations of the watch."""
    given = context.get_input(expected_type=dict) or {}
    sequence = batch.steps(given)
    reply = None
    while True:
        try:
            command = sequence.send(reply)
        except StopIteration as end:
            context.set_custom_status({"week": given.get("week"), "step": "done"})
            return end.value
        if isinstance(command, batch.Call):
            context.set_custom_status({"week": given.get("week"), "step": command.step})
            request = {"step": command.step, "payload": command.payload, "now": clock.iso(context.current_utc_datetime)}
            try:
                reply = yield context.call_activity_with_retry(BATCH_STEP, BATCH_RETRY, request, expected_type=dict)
            except Exception as e:  # a step that failed on every attempt: the batch ends failed, and says so
                if not context.is_replaying:
                    log.warning("weekly batch %s: the %s step failed: %s", context.instance_id, command.step, e)
                summary = batch.step_failed(given, command.step, clock.iso(context.current_utc_datetime))
                with contextlib.suppress(Exception):  # its record and its metric, best effort (once)
                    request = {"step": batch.RECORD, "payload": summary, "now": summary["finished_at"]}
                    yield context.call_activity(BATCH_STEP, request)
                return summary
        else:
            context.set_custom_status({"week": given.get("week"), "step": command.kind})
            reply = yield from _watch(context, command)


def _watch(context: df.DurableOrchestrationContext, command: batch.Watch):
    run = policy.RunState(index=0, pipeline=command.pipeline, parameters=command.parameters, inputs=command.inputs)
    options = policy.WatchOptions.model_validate(command.options)
    state = policy.start([run], options, context.current_utc_datetime)
    try:
        return (
            yield context.call_sub_orchestrator(
                # the run's key names the watch (and so the AML job): a replay finds the same
                # run, a week planned anew (re-run) gets runs of its own
                WATCH,
                {"state": state.to_input()},
                instance_id=f"{context.instance_id}-{command.kind}-{command.key[-12:]}",
            )
        )
    except Exception as e:  # the watch itself failed: this run's failure, and the batch says so
        if not context.is_replaying:
            log.warning("weekly batch %s: the %s watch failed: %s", context.instance_id, command.kind, e)
        return {"runs": [{"outcome": "failed", "error": {"message": f"the {command.kind} watch failed"}}]}


@bp.activity_trigger(input_name="request")
def batch_step(request: dict) -> dict:
    """One step of the weekly batch (plan, register, production, publish), at the
    orchestrator's time so that a replayed decision is the same decision."""
    from shared.mlops import steps

    now = clock.parse_iso(request["now"])
    return steps.run_step(runtime.batch_context(), request["step"], request["payload"], now)
