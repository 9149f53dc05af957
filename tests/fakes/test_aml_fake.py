"""Proves tests/fakes/aml/ (FakeAML) against the real azure-ai-ml MLClient (no network)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from urllib.parse import urlencode

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from marshmallow.warnings import Marshmallow4Warning

from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML

# azure-ai-ml 1.35.2 emits ~470 marshmallow 3.26 deprecation warnings (RemovedInMarshmallow4Warning /
# ChangedInMarshmallow4Warning, both subclasses of marshmallow.warnings.Marshmallow4Warning(DeprecationWarning))
# while importing its schemas (attributed to modules marshmallow.schema and azure.ai.ml._schema.*) and again when
# schemas are built lazily (load_job / create_or_update). Until pyproject ignores them, ignore them here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", Marshmallow4Warning)
    from azure.ai.ml import MLClient, load_job
    from azure.ai.ml.exceptions import JobException, PipelineChildJobError

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

DATA = Path(__file__).parent / "data" / "aml"
SUB = "00000000-0000-0000-0000-000000000001"
WS = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
STEPS = ["prepare", "train", "evaluate"]


@pytest.fixture
def fake() -> FakeAML:
    fake = FakeAML()
    for step in STEPS:
        fake.register_component(f"forecast_{step}", "1", DATA / "components" / f"{step}.yml")
    return fake


def make_client(fake: FakeAML, **kwargs) -> MLClient:
    return MLClient(
        credential=FakeCredential(),
        subscription_id=SUB,
        resource_group_name="rg",
        workspace_name="ws",
        transport=fake.transport(),
        **kwargs,
    )


@pytest.fixture
def ml_client(fake: FakeAML) -> MLClient:
    return make_client(fake)


def submit(ml_client: MLClient, name: str = "nightly-1", region: str = "us"):
    job = load_job(DATA / "pipeline.yml")
    job.name = name
    job.experiment_name = "forecastops"
    job.tags = {"trigger": "adf", "week": "2024-W10"}
    # attribute assignment keeps the PipelineInput wrapper; job.inputs["region"] = "us" breaks validation
    job.inputs.region = region
    return ml_client.jobs.create_or_update(job)


# ----------------------------------------------------------------------------------------------- (a) submit
def test_create_pipeline_job_sends_resolved_body(fake: FakeAML, ml_client: MLClient):
    created = submit(ml_client)

    assert created.name == "nightly-1"
    assert created.status == "NotStarted"
    assert created.experiment_name == "forecastops"
    assert created.studio_url.startswith("https://ml.azure.com/runs/nightly-1?wsid=")
    assert "&tid=00000000-0000-0000-0000-0000000000aa" in created.studio_url  # tid decoded from the token

    calls = [(r.method, r.path, r.api_version) for r in fake.requests]
    assert calls == [
        ("GET", WS, "2024-10-01-preview"),
        ("PUT", f"{WS}/jobs/nightly-1", "2024-01-01-preview"),
    ]
    put = fake.requests[-1]
    assert put.headers["Authorization"].startswith("Bearer ey")
    assert put.headers["x-azureml-token"].count(".") == 2  # user AML token, required for pipeline jobs
    props = put.json["properties"]
    assert props["jobType"] == "Pipeline"
    assert props["experimentName"] == "forecastops"
    assert props["displayName"] == "weekly-demand-forecast"
    assert props["tags"] == {"trigger": "adf", "week": "2024-W10"}
    assert props["inputs"] == {
        "region": {"jobInputType": "literal", "value": "us"},
        "max_mape": {"jobInputType": "literal", "value": "0.45"},
        "curated": {"jobInputType": "uri_folder", "uri": "azureml://datastores/lake_curated/paths/"},
    }
    assert props["settings"]["default_compute"] == f"{WS}/computes/cpu-cluster"
    assert {name: node["componentId"] for name, node in props["jobs"].items()} == {
        step: f"{WS}/components/forecast_{step}/versions/1" for step in STEPS
    }
    assert props["jobs"]["train"]["inputs"]["features"] == {
        "job_input_type": "literal",
        "value": "${{parent.jobs.prepare.outputs.features}}",
    }
    # nothing uploaded, no datastore/code/component lookups: azureml:name:version is turned into an ARM id locally
    assert not [r for r in fake.requests if "blob.core" in r.url or "/codes/" in r.path or "/datastores" in r.path]
    assert not fake.requests_to("GET", r"/components/")
    assert fake.unhandled == []
    # server side: one child run per step
    assert [c["name"] for c in fake.child_runs("nightly-1")] == STEPS


def test_registered_component_is_served(fake: FakeAML, ml_client: MLClient):
    comp = ml_client.components.get("forecast_train", "1")
    assert comp.name == "forecast_train" and comp.version == "1"
    assert set(comp.inputs) == {"features", "region"}
    with pytest.raises(ResourceNotFoundError):
        ml_client.components.get("forecast_train", "9")
    assert [r.api_version for r in fake.requests_to("GET", r"/components/forecast_train/versions/")] == [
        "2024-01-01-preview",
        "2024-01-01-preview",
    ]


# ----------------------------------------------------------------------------------------------- (b) get
def test_get_follows_status_script(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    fake.script("nightly-1", ["Queued", "Running", "Running", "Completed"])
    seen = [ml_client.jobs.get("nightly-1").status for _ in range(5)]
    assert seen == ["Queued", "Running", "Running", "Completed", "Completed"]
    gets = fake.requests_to("GET", r"/jobs/nightly-1$")
    assert {r.api_version for r in gets} == {"2024-01-01-preview"}
    assert [c["status"] for c in fake.child_runs("nightly-1")] == ["Completed"] * 3


def test_default_status_stays_not_started(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    assert ml_client.jobs.get("nightly-1").status == "NotStarted"


# ----------------------------------------------------------------------------------------------- (c) children
def test_list_child_jobs(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    fake.script("nightly-1", ["Running"])
    children = list(ml_client.jobs.list(parent_job_name="nightly-1"))
    assert [(c.display_name, c.status) for c in children] == [
        ("prepare", "Running"),
        ("train", "NotStarted"),
        ("evaluate", "NotStarted"),
    ]
    assert children[0].properties["azureml.nodeid"]
    assert children[0].id == f"{WS}/jobs/{children[0].name}"
    kids = fake.requests[-1]
    assert (kids.method, kids.url) == (
        "GET",
        f"https://eastus.api.azureml.ms/history/v1.0{WS}/runs/nightly-1/children?api-version=v1.0",
    )
    # parent GET (MFE), workspace GET (for discoveryUrl), discovery document, then run history
    assert [(r.method, r.path) for r in fake.requests[-4:-1]] == [
        ("GET", f"{WS}/jobs/nightly-1"),
        ("GET", WS),
        ("GET", "/discovery"),
    ]

    # a child can be fetched by name: MFE answers without properties, the SDK falls back to run history
    child = ml_client.jobs.get(children[1].name)
    assert (child.display_name, child.status) == ("train", "NotStarted")
    assert fake.requests[-1].path == f"/history/v1.0{WS}/runs/{children[1].name}"


def test_list_jobs(fake: FakeAML, ml_client: MLClient):
    submit(ml_client, "nightly-1")
    submit(ml_client, "nightly-2", region="eu")
    jobs = list(ml_client.jobs.list())
    assert sorted(j.name for j in jobs) == ["nightly-1", "nightly-2"]
    listed = fake.requests[-1]
    assert (listed.path, listed.api_version, listed.query["listViewType"]) == (
        f"{WS}/jobs",
        "2024-01-01-preview",
        "ActiveOnly",
    )


# ----------------------------------------------------------------------------------------------- (d) cancel
def test_cancel_without_polling(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    poller = ml_client.jobs.begin_cancel("nightly-1", polling=False)
    assert poller.done()
    post = fake.requests[-1]
    assert (post.method, post.path, post.api_version) == ("POST", f"{WS}/jobs/nightly-1/cancel", "2023-04-01-preview")
    assert ml_client.jobs.get("nightly-1").status == "CancelRequested"


def test_cancel_with_polling(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    ml_client.jobs.begin_cancel("nightly-1").result()  # follows Location (Retry-After: 0)
    assert fake.requests[-1].path.endswith("/mfeOperationResults/jc:" + fake.requests[-1].path.rsplit(":", 1)[-1])
    assert ml_client.jobs.get("nightly-1").status == "Canceled"
    assert {c["status"] for c in fake.child_runs("nightly-1")} == {"Canceled"}


def test_cancel_unknown_job_is_not_found(fake: FakeAML, ml_client: MLClient):
    with pytest.raises(ResourceNotFoundError):
        ml_client.jobs.begin_cancel("nope", polling=False)


# ----------------------------------------------------------------------------------------------- (e) failures
def test_429_retry_after_then_success(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    fake.inject("GET", r"/jobs/nightly-1$", [429, 429], headers={"Retry-After": "0.2"})
    start = time.monotonic()
    assert ml_client.jobs.get("nightly-1").status == "NotStarted"
    elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 1.5  # azure-core RetryPolicy slept Retry-After (0.2 s) twice
    assert len(fake.requests_to("GET", r"/jobs/nightly-1$")) == 3


def test_503_exhausts_fast_retries(fake: FakeAML):
    ml_client = make_client(fake, retry_total=2, retry_backoff_factor=0.01, retry_backoff_max=0.05)
    fake.inject("GET", r"/jobs/nightly-1$", [503], forever=True)
    start = time.monotonic()
    with pytest.raises(HttpResponseError) as err:
        ml_client.jobs.get("nightly-1")
    assert time.monotonic() - start < 1
    assert err.value.status_code == 503
    assert type(err.value) is HttpResponseError
    assert len(fake.requests_to("GET", r"/jobs/nightly-1$")) == 3  # 1 + retry_total


def test_503_without_retries(fake: FakeAML):
    ml_client = make_client(fake, retry_total=0)
    fake.inject("GET", r"/jobs/", [503], forever=True)
    with pytest.raises(HttpResponseError):
        ml_client.jobs.get("nightly-1")
    assert len(fake.requests) == 1


def test_403_authorization_failed(fake: FakeAML, ml_client: MLClient):
    fake.inject("PUT", r"/jobs/", [403])
    with pytest.raises(HttpResponseError) as err:
        submit(ml_client)
    exc = err.value
    assert type(exc) is HttpResponseError  # not ClientAuthenticationError (that is 401 only)
    assert exc.status_code == 403
    assert exc.error.code == "AuthorizationFailed"
    assert "does not have authorization to perform action" in exc.message
    assert str(exc).startswith("(AuthorizationFailed) The client")


def test_404_on_get(fake: FakeAML, ml_client: MLClient):
    with pytest.raises(ResourceNotFoundError) as err:
        ml_client.jobs.get("does-not-exist")
    assert err.value.status_code == 404
    assert err.value.error.code == "UserError"
    assert "Could not find job does-not-exist" in err.value.message


def test_unknown_route_raises_assertion(fake: FakeAML, ml_client: MLClient):
    with pytest.raises(AssertionError, match=r"no route for GET https://management.azure.com/.*/datastores/lake"):
        ml_client.datastores.get("lake")
    assert fake.unhandled and fake.unhandled[0].method == "GET"


# ----------------------------------------------------------------------------------------------- (f) failed job
def test_failed_job_error_and_step(fake: FakeAML, ml_client: MLClient, capsys):
    submit(ml_client)
    fake.fail("nightly-1", step="train", message="MAPE 0.61 above threshold 0.45")

    job = ml_client.jobs.get("nightly-1")
    assert job.status == "Failed"  # the MFE job resource carries no error text
    assert "error" not in json.dumps(job._to_dict()).lower()

    children = {c.display_name: c for c in ml_client.jobs.list(parent_job_name="nightly-1")}
    assert {k: c.status for k, c in children.items()} == {
        "prepare": "Completed",
        "train": "Failed",
        "evaluate": "Canceled",
    }

    # public way to the error text: stream() raises JobException with run history's error for the run
    with pytest.raises(JobException) as err:
        ml_client.jobs.stream("nightly-1")
    assert "Failed nodes: /train" in err.value.message
    assert "RunId: nightly-1" in capsys.readouterr().out
    # ... but not for a child (stream/get-as-MFE-job refuse pipeline child jobs)
    with pytest.raises(PipelineChildJobError):
        ml_client.jobs.stream(children["train"].name)

    # private (no streaming): run history RunDetails.error
    details = ml_client.jobs._runs_operations.get_run_details(children["train"].name)
    assert details.error.error.message == "MAPE 0.61 above threshold 0.45"
    assert details.error.error.target == "train"


# ----------------------------------------------------------------------------------------------- (g) mlflow
def mlflow_base(ml_client: MLClient) -> str:
    tracking = ml_client.workspaces.get("ws").mlflow_tracking_uri  # azureml://eastus.api.azureml.ms/mlflow/v1.0/...
    return tracking.replace("azureml://", "https://", 1) + "/api/2.0/mlflow"


def test_mlflow_metrics_with_pipeline_client(fake: FakeAML):
    """Product-side way: a plain azure.core PipelineClient built from the same credential and transport."""
    credential, transport = FakeCredential(), fake.transport()
    ml_client = MLClient(credential, SUB, "rg", "ws", transport=transport)
    submit(ml_client)
    train = fake.child_run("nightly-1", "train")["runId"]
    fake.set_metrics(train, {"mape": 0.3, "rmse": 12.5})

    base = mlflow_base(ml_client)
    client = PipelineClient(
        base_url=base,
        policies=[
            RetryPolicy(retry_total=2, retry_backoff_factor=0.01),
            BearerTokenCredentialPolicy(credential, "https://ml.azure.com/.default"),
        ],
        transport=transport,
    )
    resp = client.send_request(HttpRequest("GET", f"{base}/runs/get", params={"run_id": train}))
    resp.raise_for_status()
    metrics = {m["key"]: m["value"] for m in resp.json()["run"]["data"]["metrics"]}
    assert metrics == {"mape": 0.3, "rmse": 12.5}
    got = fake.requests[-1]
    assert got.url == (
        f"https://eastus.api.azureml.ms/mlflow/v1.0{WS}/api/2.0/mlflow/runs/get?{urlencode({'run_id': train})}"
    )
    assert got.headers["Authorization"].startswith("Bearer ")

    # runs/search: every step of the pipeline with its metrics
    resp = client.send_request(
        HttpRequest(
            "POST",
            f"{base}/runs/search",
            json={"experiment_ids": [], "filter": "tags.mlflow.rootRunId = 'nightly-1'", "max_results": 100},
        )
    )
    runs = {r["info"]["run_name"]: r for r in resp.json()["runs"]}
    assert set(runs) == set(STEPS)
    mape = runs["train"]["data"]["metrics"][0]
    assert (mape["key"], mape["value"], mape["step"]) == ("mape", 0.3, 0)
    assert isinstance(mape["timestamp"], int)  # epoch milliseconds
    assert runs["train"]["data"]["tags"][-1] == {
        "key": "azureml.nodeid",
        "value": fake.child_run("nightly-1", "train")["properties"]["azureml.nodeid"],
    }

    missing = client.send_request(HttpRequest("GET", f"{base}/runs/get", params={"run_id": "nope"}))
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_metrics_through_mlclient_pipeline(fake: FakeAML, ml_client: MLClient):
    """No extra objects: reuse a generated client's pipeline (private attribute, ARM token)."""
    fake.set_metrics("some-run", {"mape": 0.42})
    base = mlflow_base(ml_client)
    arm_client = ml_client.jobs._operation_2023_02_preview._client  # azure.mgmt.core ARMPipelineClient
    resp = arm_client.send_request(HttpRequest("GET", f"{base}/runs/get", params={"run_id": "some-run"}))
    assert resp.status_code == 200
    assert resp.json()["run"]["data"]["metrics"][0]["value"] == 0.42
    token = fake.requests[-1].headers["Authorization"].split()[1]
    payload = json.loads(_b64decode(token.split(".")[1]))
    assert payload["aud"] == "https://management.azure.com"


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# ----------------------------------------------------------------------------------------------- (h) status contract
# AML's contract: only Completed, Failed and Canceled end a job; NotResponding, Paused and Unknown do not.
def test_not_responding_job_keeps_its_steps_open_until_it_completes(fake: FakeAML, ml_client: MLClient):
    submit(ml_client)
    fake.script("nightly-1", ["Running", "NotResponding", "Running", "Completed"])

    def steps() -> list[tuple[str, str | None]]:
        return [(c["status"], c["endTimeUtc"]) for c in fake.child_runs("nightly-1")]

    running = [("Running", None), ("NotStarted", None), ("NotStarted", None)]
    assert ml_client.jobs.get("nightly-1").status == "Running"
    assert steps() == running
    assert ml_client.jobs.get("nightly-1").status == "NotResponding"
    assert steps() == running  # no step ended, none took the parent's status
    assert fake.mlflow_runs["nightly-1"]["status"] == "RUNNING"
    assert ml_client.jobs.get("nightly-1").status == "Running"
    assert steps() == running
    assert ml_client.jobs.get("nightly-1").status == "Completed"
    assert [status for status, _ in steps()] == ["Completed"] * 3
    assert all(end for _, end in steps())


@pytest.mark.parametrize("stalled", ["NotResponding", "Paused", "Unknown"])
def test_stalled_job_can_still_be_canceled(fake: FakeAML, ml_client: MLClient, stalled: str):
    submit(ml_client)
    fake.script("nightly-1", ["Running", stalled])
    assert [ml_client.jobs.get("nightly-1").status for _ in range(2)] == ["Running", stalled]

    ml_client.jobs.begin_cancel("nightly-1").result()

    assert ml_client.jobs.get("nightly-1").status == "Canceled"
    assert [c["status"] for c in fake.child_runs("nightly-1")] == ["Canceled"] * 3
    assert all(c["endTimeUtc"] for c in fake.child_runs("nightly-1"))


# ----------------------------------------------------------------------------------------------- transport details
def test_streamed_response_reads(fake: FakeAML, ml_client: MLClient):
    base = mlflow_base(ml_client)
    fake.set_metrics("r1", {"mape": 0.1})
    client = ml_client.jobs._operation_2023_02_preview._client
    resp = client.send_request(HttpRequest("GET", f"{base}/runs/get?run_id=r1"), stream=True)
    body = b"".join(resp.iter_bytes())
    assert json.loads(body)["run"]["info"]["run_id"] == "r1"
