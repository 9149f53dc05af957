"""``python -m shared aml-assets``: the environment and every component the pipelines name,
registered through azure-ai-ml's real ``MLClient`` against the AML fake (code folders uploaded
to a blob store on Azurite through the SAS AML hands out), at versions derived from their
content; the pipelines then submit exactly those versions."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from shared.aml import assets, runs
from shared.aml.azureml import AzureMLBackend
from shared.aml.catalog import load_catalog
from shared.tooling import cli
from tests.fakes.aml.assets import BlobStore
from tests.fakes.aml.fake import FakeAML

pytestmark = pytest.mark.azurite


@pytest.fixture
def fake(azurite):
    fake = FakeAML(blob_store=BlobStore(azurite.connection_string))
    fake.add_compute("cpu-cluster")
    return fake


@pytest.fixture
def backend(fake):
    return fake.backend(retries=1)


def aml_assets(backend, monkeypatch, *args: str) -> tuple[int, str]:
    """The command as a deploy runs it, on the fake's workspace (the settings' client, replaced)."""
    monkeypatch.setattr(AzureMLBackend, "from_settings", classmethod(lambda cls, settings: backend))
    out = io.StringIO()
    return cli.main(["aml-assets", *args], out=out), out.getvalue()


def puts(fake: FakeAML) -> list[str]:
    return [r.path.split("/workspaces/ws/", 1)[1] for r in fake.requests if r.method in ("PUT", "POST")]


def test_registers_the_environment_and_every_component_then_nothing_on_a_second_run(fake, backend, monkeypatch):
    code, text = aml_assets(backend, monkeypatch)
    assert code == 0, text
    env = assets.environment()
    assert list(fake.environments[env.name]) == [env.version]
    sent = fake.environments[env.name][env.version]["properties"]
    assert "lightgbm==4.7.0" in sent["condaFile"] and sent["image"] == assets.BASE_IMAGE
    expected = {c.name: c.version for c in assets.components().values()}
    assert {n: list(v) for n, v in fake.components.items()} == {n: [v] for n, v in expected.items()}
    assert len(expected) == 10 and "forecastops_forecast_score_groups" in expected
    for name, version in expected.items():
        spec = fake.components[name][version]["properties"]["componentSpec"]
        spec = spec["task"] if spec["type"] == "parallel" else spec  # a parallel one's are its task's
        assert spec["environment"].endswith(f"/environments/{env.name}/versions/{env.version}")  # pinned, no @latest
        assert "/codes/" in spec["code"]
    # the code folders reached the workspace's blob store through AML's SAS
    assert {"src/train.py", "src/prepare.py", "src/step.py"} <= {
        n.rsplit("/", 2)[-2] + "/" + n.rsplit("/", 1)[-1] for n in fake.blob_store.names()
    }
    assert "11 created, 1 already there, 0 missing" in text and "exists   compute cpu-cluster" in text

    first = len(puts(fake))
    code, text = aml_assets(backend, monkeypatch)
    assert code == 0 and len(puts(fake)) == first  # a second run creates nothing
    assert "0 created, 12 already there, 0 missing" in text


def test_check_creates_nothing_and_lists_what_is_missing(fake, backend, monkeypatch):
    del fake.computes["cpu-cluster"]
    code, text = aml_assets(backend, monkeypatch, "--check")
    assert code == 1 and puts(fake) == []
    assert "0 created, 0 already there, 12 missing" in text
    assert "missing  component forecastops_forecast_score_production:" in text
    assert "computes come from infra/ (azd provision)" in text and "run python -m shared aml-assets" in text


def test_the_pipelines_submit_the_versions_it_registered(fake, backend, monkeypatch):
    assert aml_assets(backend, monkeypatch)[0] == 0
    for pipeline, body in (("forecast", {}), ("score", {"inputs": {"production": "models/_plans/p"}}), ("smoke", {})):
        status, answer, _ = runs.submit(backend, load_catalog(), pipeline, json.dumps(body).encode(), "")
        assert status == 202, answer
    for put in fake.requests_to("PUT", r"/jobs/"):
        tagged = put.json["properties"]["tags"]["forecastops.components"].split(",")
        assert tagged and all(fake.components[n][v] for n, v in (t.split(":") for t in tagged))


def test_a_workspace_without_the_assets_refuses_the_run_with_the_components_name(fake, backend):
    status, body, _ = runs.submit(backend, load_catalog(), "forecast", b"{}", "")
    assert status == 502 and body["error"] == "missing_asset"
    assert (
        "forecastops_forecast_prepare:" + assets.components()["forecastops_forecast_prepare"].version in body["message"]
    )


def test_settings_without_a_workspace_are_a_usage_error(capsys):
    assert cli.main(["aml-assets"], out=io.StringIO()) == 2
    assert "AML_SUBSCRIPTION_ID" in capsys.readouterr().err


# versions from content ------------------------------------------------------------------------------------
def _component(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "step.py").write_text("print('one')\n")
    (tmp_path / "src" / "__pycache__").mkdir()
    (tmp_path / "src" / "__pycache__" / "step.cpython-311.pyc").write_bytes(b"\0compiled")
    file = tmp_path / "components" / "step.yml"
    file.parent.mkdir()
    file.write_text("name: c\ntype: command\ncode: ../src\ncommand: python step.py\n")
    return file


def test_a_components_version_follows_its_yaml_its_code_and_its_environment(tmp_path):
    env = assets.environment()
    file = _component(tmp_path)
    v1 = assets.component_version(file, env)
    assert v1 == assets.component_version(file, env)  # the same content, the same version
    (tmp_path / "src" / "__pycache__" / "step.cpython-311.pyc").write_bytes(b"\0other")
    assert assets.component_version(file, env) == v1  # compiled files are not code
    (tmp_path / "src" / "step.py").write_text("print('two')\n")
    v2 = assets.component_version(file, env)
    (tmp_path / "src" / "helper.py").write_text("")
    v3 = assets.component_version(file, env)
    file.write_text(file.read_text() + "description: other\n")
    v4 = assets.component_version(file, env)
    other_env = assets.EnvironmentAsset(env.name, "0" * 16, env.conda_file, env.image)
    v5 = assets.component_version(file, other_env)
    assert len({v1, v2, v3, v4, v5}) == 5


def test_the_environments_version_follows_its_conda_file_and_image(tmp_path):
    conda = tmp_path / "conda.yml"
    shutil.copy(assets.CONDA_FILE, conda)
    a = assets.environment(conda, "img:1")
    assert a == assets.environment(conda, "img:1")
    assert assets.environment(conda, "img:2").version != a.version
    conda.write_text(conda.read_text().replace("lightgbm==4.7.0", "lightgbm==4.6.0"))
    assert assets.environment.__wrapped__(conda, "img:1").version != a.version


def test_pin_names_this_repos_components_at_their_version_and_leaves_others():
    train = assets.components()["forecastops_forecast_train"]
    assert assets.pin("azureml:forecastops_forecast_train:2") == f"azureml:forecastops_forecast_train:{train.version}"
    assert assets.pin("azureml:forecastops_forecast_train@latest") == train.ref
    assert assets.pin("azureml:someone_elses:3") == "azureml:someone_elses:3"
    assert assets.pin("file:./x.yml") == "file:./x.yml"
