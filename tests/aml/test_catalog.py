"""The pipeline catalog and the validation of run requests (ours and ADF's activity body)."""

from __future__ import annotations

import pytest

from shared.aml.catalog import CatalogError, load_catalog
from shared.aml.request import validate_request
from tests.drivers import ROOT_DIR


@pytest.fixture
def smoke():
    return load_catalog()["smoke"]


def test_the_catalog_loads_and_every_file_it_names_exists():
    catalog = load_catalog()
    assert "smoke" in catalog
    for p in catalog.values():
        if p.definition.job:
            assert (ROOT_DIR / p.definition.job).is_file()


def test_catalog_parameters_are_the_pipeline_yaml_inputs():
    import yaml

    for p in load_catalog().values():
        if p.definition.kind == "pipeline_job":
            job = yaml.safe_load((ROOT_DIR / p.definition.job).read_text())
            assert set(p.parameters) | set(p.inputs) <= set(job["inputs"]), p.name


def test_every_pipeline_job_and_component_loads_with_azure_ai_ml():
    """What the azureml backend submits must load: azure-ai-ml's own schema (a pipeline job's
    input cannot say ``optional``; this caught the forecast pipeline's oracle input)."""
    from azure.ai.ml import load_component, load_job

    for p in load_catalog().values():
        if p.definition.kind != "pipeline_job":
            continue
        job = load_job(ROOT_DIR / p.definition.job)
        assert set(p.parameters) | set(p.inputs) <= set(job.inputs), p.name
        for component in (p.local.components if p.local else {}).values():
            load_component(ROOT_DIR / component)


def test_a_broken_catalog_lists_every_problem(tmp_path):
    (tmp_path / "pipelines").mkdir()
    bad = tmp_path / "pipelines" / "catalog.toml"
    bad.write_text(
        '[pipelines.a]\ndescription = "x"\nexperiment = "e"\ndefinition = { kind = "component" }\n'
        '[pipelines.b]\ndescription = "y"\nexperiment = "e"\ndefinition = { kind = "pipeline_job", job = "nope.yml" }\n'
        '[pipelines.b.parameters.p]\ntype = "complex"\n'
    )
    with pytest.raises(CatalogError) as e:
        load_catalog(bad)
    text = str(e.value)
    assert "kind = 'component' needs 'component'" in text and "b.parameters.p.type" in text


def test_defaults_fill_in_and_the_same_key_names_the_same_job(smoke):
    req, problems = validate_request(
        smoke, {"parameters": {"seconds": 1}, "idempotency_key": "run-1", "tags": {"who": "adf"}}
    )
    assert problems == []
    assert req.parameters == {"seconds": 1, "fail_step": "none", "region": "all"}
    assert req.tags == {"product": "forecastops", "purpose": "smoke", "who": "adf"}
    assert req.experiment == "forecastops-smoke"
    again, _ = validate_request(smoke, {"idempotency_key": "run-1"})
    other, _ = validate_request(smoke, {"idempotency_key": "run-2"})
    assert req.job_name() == again.job_name() != other.job_name()
    assert req.job_name().startswith("smoke-run-1-")
    fresh = [validate_request(smoke, {})[0].job_name() for _ in range(2)]
    assert fresh[0] != fresh[1]


def test_every_problem_of_a_request_is_listed(smoke):
    req, problems = validate_request(
        smoke,
        {
            "parameters": {"seconds": "fast", "fail_step": "deploy", "colour": "red"},
            "inputs": {"data": "x"},
            "experiment": "has spaces",
            "idempotency_key": "a/b",
            "tags": ["x"],
            "surprise": 1,
        },
    )
    assert req is None
    assert sorted(p["field"] for p in problems) == sorted(
        [
            "surprise",
            "parameters.colour",
            "parameters.seconds",
            "parameters.fail_step",
            "inputs.data",
            "experiment",
            "idempotency_key",
            "tags",
        ]
    )
    assert all(p["message"] for p in problems)


def test_the_adf_machine_learning_execute_pipeline_body_is_accepted_unchanged(smoke):
    body = {
        "experimentName": "weekly-batch",
        "mlPipelineParameters": {"seconds": "0.5", "fail_step": "none", "region": "west"},
        "dataPathAssignments": {},
        "continueOnStepFailure": True,
    }
    req, problems = validate_request(smoke, body)
    assert problems == []
    assert req.parameters == {
        "seconds": 0.5,
        "fail_step": "none",
        "region": "west",
    }  # text coerced to the declared types
    assert req.experiment == "weekly-batch" and req.continue_on_step_failure is True
    _, problems = validate_request(
        smoke, {"experimentName": "x", "mlPipelineParameters": {"seconds": "soon"}, "dataPathAssignments": {"d": {}}}
    )
    assert [p["field"] for p in problems] == ["mlPipelineParameters.seconds", "dataPathAssignments.d"]


@pytest.mark.parametrize(
    "path",
    ["../etc", "curated/../../x", "/etc/passwd", "file:///etc", "azureml://datastores/lake/paths/../x", ""]
    + ["azureml://datastores/lake_curated/paths/../raw", "azureml://datastores/other/paths/"],
)
def test_an_input_path_that_leaves_the_lake_is_refused(smoke, path):
    from shared.aml.catalog import Input, Pipeline

    p = Pipeline(**{**smoke.model_dump(), "inputs": {"data": Input()}})
    _, problems = validate_request(p, {"inputs": {"data": path}})
    assert [x["field"] for x in problems] == ["inputs.data"]
    ok, problems = validate_request(p, {"inputs": {"data": "azureml://datastores/lake/paths/curated/weather_daily/v1"}})
    assert problems == [] and ok.inputs["data"].endswith("weather_daily/v1")


def test_a_batch_endpoint_entry_is_refused_until_the_kind_is_supported(tmp_path):
    (tmp_path / "pipelines").mkdir()
    bad = tmp_path / "pipelines" / "catalog.toml"
    bad.write_text(
        '[pipelines.b]\ndescription = "x"\nexperiment = "e"\ndefinition = { kind = "batch_endpoint", endpoint = "ep" }\n'
    )
    with pytest.raises(CatalogError, match="b.definition"):
        load_catalog(bad)


def test_the_forecast_pipeline_declares_its_gates_and_the_smoke_pipeline_requires_no_metrics():
    catalog = load_catalog()
    assert catalog["forecast"].gates.required == ("mape", "trained_at")
    assert catalog["forecast"].gates.max_mape == 0.45 and catalog["forecast"].gates.max_age_days == 60
    assert catalog["smoke"].gates.required == ()


@pytest.mark.parametrize(
    "ref",
    [
        {"DataStoreName": "lake", "RelativePath": "../../../etc"},
        {"DataStoreName": "a/paths/x", "RelativePath": "curated"},
        {"DataStoreName": "lake", "RelativePath": ""},
        {"DataStoreName": "lake_runs", "RelativePath": "x/../../curated"},
    ],
    ids=["dotdot", "store-with-a-path", "empty", "container-dotdot"],
)
def test_an_adf_data_path_that_leaves_the_lake_is_refused(smoke, ref):
    from shared.aml.catalog import Input, Pipeline

    p = Pipeline(**{**smoke.model_dump(), "inputs": {"data": Input()}})
    _, problems = validate_request(p, {"experimentName": "x", "dataPathAssignments": {"data": ref}})
    assert [x["field"] for x in problems] == ["dataPathAssignments.data"]
    ok, problems = validate_request(
        p,
        {"experimentName": "x", "dataPathAssignments": {"data": {"DataStoreName": "lake", "RelativePath": "/curated"}}},
    )
    # the legacy datastore over the whole account is kept as it is (the azureml backend maps it)
    assert problems == [] and ok.inputs["data"] == "azureml://datastores/lake/paths/curated"
    ok, problems = validate_request(
        p,
        {
            "experimentName": "x",
            "dataPathAssignments": {"data": {"DataStoreName": "lake_curated", "RelativePath": "/weather_daily/"}},
        },
    )
    assert problems == [] and ok.inputs["data"] == "azureml://datastores/lake_curated/paths/weather_daily"
    ok, problems = validate_request(
        p,
        {"experimentName": "x", "dataPathAssignments": {"data": {"DataStoreName": "lake_curated", "RelativePath": ""}}},
    )
    assert problems == [] and ok.inputs["data"] == "azureml://datastores/lake_curated/paths/"
    # another datastore is not the lake: kept as it is
    ok, problems = validate_request(
        p,
        {"experimentName": "x", "dataPathAssignments": {"data": {"DataStoreName": "shared_ds", "RelativePath": "a/b"}}},
    )
    assert problems == [] and ok.inputs["data"] == "azureml://datastores/shared_ds/paths/a/b"


def test_the_forecast_pipeline_retrains_all_groups_unless_told_otherwise():
    forecast = load_catalog()["forecast"]
    assert forecast.parameters["groups"].type == "string" and forecast.parameters["groups"].default == "all"
    req, problems = validate_request(forecast, {"parameters": {"groups": "florida.large.fast,florida.small.slow"}})
    assert problems == [] and req.parameters["groups"] == "florida.large.fast,florida.small.slow"


def test_the_score_pipeline_needs_production_models_and_no_model_metrics():
    import yaml

    catalog = load_catalog()
    score, forecast = catalog["score"], catalog["forecast"]
    assert score.gates.required == ()
    assert set(score.local.components) == {
        "forecastops_forecast_prepare",
        "forecastops_forecast_score_plan",
        "forecastops_forecast_score_groups",
        "forecastops_forecast_score_production",
    }
    assert (
        score.local.components["forecastops_forecast_prepare"]
        == forecast.local.components["forecastops_forecast_prepare"]
    )
    for name in ("holdout_weeks", "origins", "regions"):  # prepare's, as the forecast pipeline's
        assert score.parameters[name] == forecast.parameters[name].model_copy(
            update={"description": score.parameters[name].description}
        )
    assert score.inputs["curated"].default == forecast.inputs["curated"].default
    assert score.inputs["production"].required and score.inputs["production"].type == "uri_folder"
    _, problems = validate_request(score, {})
    assert [p["field"] for p in problems] == ["inputs.production"]
    job = yaml.safe_load((ROOT_DIR / score.definition.job).read_text())
    assert {step["component"].split(":")[1] for step in job["jobs"].values()} == set(score.local.components)
    component = yaml.safe_load((ROOT_DIR / score.local.components["forecastops_forecast_score_production"]).read_text())
    assert component["name"] == "forecastops_forecast_score_production"
    assert set(component["inputs"]) == {"features", "production", "work", "served", "results"}
    assert set(component["outputs"]) == {"scores"}
    parallel = yaml.safe_load((ROOT_DIR / score.local.components["forecastops_forecast_score_groups"]).read_text())
    assert parallel["type"] == "parallel" and parallel["task"]["entry_script"] == "score_groups.py"
    assert set(score.parallel) == {"score_groups"}


# --- the health policy's values (pipelines/health_policy.json) --------------------------------------


def _catalog_with_gates(tmp_path, gates: str):
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    path = tmp_path / "pipelines" / f"catalog-{abs(hash(gates))}.toml"  # load_catalog caches by path
    path.write_text(
        '[pipelines.a]\ndescription = "x"\nexperiment = "e"\ndefinition = { kind = "component", component = "azureml:a:1" }\n'
        f"[pipelines.a.gates]\n{gates}\n"
    )
    return load_catalog(path)


def test_the_gates_are_the_health_policy_s_and_a_catalog_may_make_them_stricter_never_looser(tmp_path):
    from shared.aml.catalog import Gates
    from shared.health import policy

    limits = policy().gates
    assert (Gates().max_mape, Gates().max_age_days) == (limits.max_mape, limits.max_age_days)
    for p in load_catalog().values():
        assert (p.gates.max_mape, p.gates.max_age_days) == (limits.max_mape, limits.max_age_days), p.name
    stricter = _catalog_with_gates(tmp_path, f"max_mape = {limits.max_mape / 2}\nmax_age_days = 7")["a"].gates
    assert (stricter.max_mape, stricter.max_age_days) == (limits.max_mape / 2, 7)
    with pytest.raises(CatalogError) as e:
        _catalog_with_gates(tmp_path, f"max_mape = {limits.max_mape + 0.1}\nmax_age_days = {limits.max_age_days + 1}")
    assert "a.gates.max_mape" in str(e.value) and "a.gates.max_age_days" in str(e.value)
    assert "looser than the health policy's" in str(e.value)


def test_the_forecast_pipeline_passes_the_policy_to_its_evaluate_step_on_both_backends(tmp_path):
    import yaml

    from shared.aml import jobspec
    from shared.aml.local.plan import plan
    from shared.health import policy
    from shared.lake import LocalLake

    forecast = load_catalog()["forecast"]
    values = {"max_mape": forecast.gates.max_mape, "baseline_margin": policy().baseline.margin}
    req, problems = validate_request(forecast, {})
    assert problems == [] and {k: req.parameters[k] for k in values} == values
    # the value the policy gives is accepted (a watch resubmits the parameters it was given),
    # any other refused: a run cannot move a gate
    again, problems = validate_request(forecast, {"parameters": dict(values)})
    assert problems == [] and again.parameters == req.parameters
    _, problems = validate_request(forecast, {"parameters": {"max_mape": 0.9, "baseline_margin": 0.5}})
    assert [p["field"] for p in problems] == ["parameters.max_mape", "parameters.baseline_margin"]
    assert "set by the health policy (gates.max_mape" in problems[0]["message"]
    # the pipeline binds them to evaluate, whose command passes them on
    job = yaml.safe_load((ROOT_DIR / forecast.definition.job).read_text())
    assert {k: job["jobs"]["evaluate"]["inputs"][k] for k in values} == {
        k: f"${{{{parent.inputs.{k}}}}}" for k in values
    }
    # local backend: evaluate's command line
    (evaluate,) = [
        s for s in plan(forecast, req, LocalLake(tmp_path / "lake"), tmp_path / "work") if s.name == "evaluate"
    ]
    argv = evaluate.argv
    assert argv[argv.index("--max-mape") + 1] == str(values["max_mape"])
    assert argv[argv.index("--baseline-margin") + 1] == str(values["baseline_margin"])
    # azureml backend: the job's literal inputs
    spec = jobspec.build(ROOT_DIR / forecast.definition.job, req, forecast, "run-1", lambda *_: {})
    assert {k: spec["inputs"][k] for k in values} == values


@pytest.mark.parametrize(
    "path",
    [
        "FILE:///etc/passwd",
        "File:///etc/passwd",
        "file:/etc/passwd",
        "HTTPS://account.blob.core.windows.net/curated/x",
        "ABFSS://curated@account.dfs.core.windows.net/x",
        "Wasbs://curated@account.blob.core.windows.net/x",
        "AZUREML://datastores/lake_curated/paths/../raw",
        "AzureML://datastores/other/paths/",
    ],
)
def test_an_input_uri_scheme_is_refused_whatever_its_case(smoke, path):
    from shared.aml.catalog import Input, Pipeline

    p = Pipeline(**{**smoke.model_dump(), "inputs": {"data": Input()}})
    _, problems = validate_request(p, {"inputs": {"data": path}})
    assert [x["field"] for x in problems] == ["inputs.data"]


def test_an_upper_case_lake_uri_is_read_as_the_lake_and_handed_on_in_lower_case(smoke):
    from shared.aml.catalog import Input, Pipeline

    p = Pipeline(**{**smoke.model_dump(), "inputs": {"data": Input()}})
    ok, problems = validate_request(p, {"inputs": {"data": "AZUREML://datastores/lake_curated/paths/weather_daily"}})
    assert problems == [] and ok.inputs["data"] == "azureml://datastores/lake_curated/paths/weather_daily"


@pytest.mark.parametrize(
    ("params", "adf"),
    [
        ({"seconds": float("inf")}, False),
        ({"seconds": float("nan")}, False),
        ({"seconds": "inf"}, True),
        ({"seconds": "NaN"}, True),
        ({"seconds": "1e999"}, True),
        ({"seconds": -1}, False),
        ({"seconds": 1e9}, False),
    ],
    ids=["inf", "nan", "adf-inf", "adf-nan", "adf-overflow", "negative", "huge"],
)
def test_a_number_parameter_must_be_finite_and_within_the_catalogs_bounds(smoke, params, adf):
    body = {"experimentName": "x", "mlPipelineParameters": params} if adf else {"parameters": params}
    _, problems = validate_request(smoke, body)
    assert [p["field"] for p in problems] == [("mlPipelineParameters" if adf else "parameters") + ".seconds"]


@pytest.mark.parametrize(
    "params",
    [
        {"holdout_weeks": "\u0661\u0660"},
        {"holdout_weeks": "1_0"},
        {"holdout_weeks": " 10"},
        {"holdout_weeks": "-5"},
        {"origins": "0"},
        {"seed": "1000000000000000000000000000000"},
    ],
    ids=["arabic-digits", "underscore", "space", "negative", "zero-origins", "huge-seed"],
)
def test_an_integer_parameter_from_text_is_plain_ascii_digits_within_bounds(params):
    forecast = load_catalog()["forecast"]
    _, problems = validate_request(forecast, {"experimentName": "x", "mlPipelineParameters": params})
    assert [p["field"] for p in problems] == [f"mlPipelineParameters.{next(iter(params))}"]


@pytest.mark.parametrize(
    "params", [{"holdout_weeks": -5}, {"origins": 0}, {"seed": 10**30}, {"mape_floor": -1}], ids=str
)
def test_every_numeric_parameter_has_catalog_bounds(params):
    forecast = load_catalog()["forecast"]
    _, problems = validate_request(forecast, {"parameters": params})
    assert [p["field"] for p in problems] == [f"parameters.{next(iter(params))}"]


def test_every_numeric_parameter_of_the_catalog_declares_its_bounds():
    for p in load_catalog().values():
        for name, spec in p.parameters.items():
            if spec.type in ("integer", "number") and spec.policy is None:
                assert spec.minimum is not None and spec.maximum is not None, f"{p.name}.{name}"


@pytest.mark.parametrize(
    "body",
    [
        {"idempotency_key": "k1\n"},
        {"experiment": "exp\n"},
        {"experimentName": "exp\n", "mlPipelineParameters": {}},
        {"experimentName": "x", "continueOnStepFailure": "true"},
        {"experimentName": "x", "continueOnStepFailure": 1},
        {"tags": {"a": 1}},
    ],
    ids=["key-newline", "experiment-newline", "adf-experiment-newline", "bool-text", "bool-int", "tag-int"],
)
def test_the_body_is_strict(smoke, body):
    _, problems = validate_request(smoke, body)
    assert problems, body
