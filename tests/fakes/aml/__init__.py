"""In-process fake of the Azure ML REST surface that azure-ai-ml's ``MLClient`` talks to.

Usage::

    fake = FakeAML()                                    # tests.fakes.aml.fake
    fake.register_component("forecast_prepare", "1", "tests/fakes/data/aml/components/prepare.yml")
    ml_client = MLClient(
        credential=FakeCredential(),                    # tests.fakes.aml.credential
        subscription_id=fake.subscription_id,
        resource_group_name=fake.resource_group,
        workspace_name=fake.workspace_name,
        transport=fake.transport(),
    )
    job = ml_client.jobs.create_or_update(load_job("tests/fakes/data/aml/pipeline.yml"))
    fake.script(job.name, ["Running", "Completed"])   # each GET of the job advances one step
    fake.fail(job.name, step="train", message="boom")   # pipeline + child 'train' Failed, error on the child run
    fake.set_metrics(child_run_id, {"mape": 0.3})       # answered on the MLflow REST endpoints
    fake.inject("GET", r"/jobs/nightly$", [429], headers={"Retry-After": "0"})
    fake.requests        # every request seen: RecordedRequest(method, url, path, query, json, headers)
    fake.unhandled       # requests that matched no route (they also raise AssertionError)

Response bodies follow the shapes of the real services (ARM/MFE ``JobBase`` / ``ComponentVersion`` /
``Workspace`` resources, Run History ``Run`` / ``PaginatedRunList`` / ``RunDetails``, the discovery document, and
MLflow's REST API ``runs/get`` / ``runs/search`` / ``metrics/get-history``). Responses are built with azure-core's
own ``RequestsTransportResponse`` / ``RestRequestsTransportResponse`` around an in-memory ``requests.Response``,
so ``stream=True``, ``read()``, ``stream_download()`` and ``iter_bytes()`` behave as with the real transport.

Modules, one concern each:

* ``contract``: hosts, the resource provider, which job statuses end a job, AML's timestamps.
* ``credential``: ``FakeCredential`` and ``make_jwt`` (tokens whose audience is the requested resource).
* ``transport``: ``FakeTransport`` (azure-core transport, no network) and the request / reply records.
* ``workspace``: the workspace's identity, state, resource bodies, error bodies and components.
* ``jobs``: MFE jobs: submit, get (status scripts), list, cancel, failures, pipeline child runs.
* ``runhistory``: Run History: runs, run details, child runs.
* ``tracking``: MLflow's tracking REST API: runs, metrics, search.
* ``models``: the model registry: model containers and versions (PUT, GET, list).
* ``data``: data assets: data containers and versions (PUT, GET, list).
* ``fake``: ``FakeAML`` composing them, with request recording, fault injection and the route table.
"""
