"""Users' flow images: `prefect-aci image build --requirements FILE --name NAME` builds a child of
the built image with FILE resolved into a hashed lock; it runs flows with the package baked in."""

import json

import pytest

from prefect_aci.core.records import read_record
from tests.conftest import TEST_REPOSITORY, run_builder
from tests.containers import run_and_wait

# A flow that proves where it runs: PID 1, the user, and that the package imports.
FLOW = """
import json, os
from prefect import flow

@flow
def uses_tomli_w():
    import tomli_w
    with open("/proc/1/cmdline", "rb") as cmdline:
        pid1 = cmdline.read().split(b"\\0")[0].decode()
    return {"pid1": pid1, "uid": os.getuid(), "toml": tomli_w.dumps({"a": 1}).strip()}

print(json.dumps(uses_tomli_w()))
"""


EPHEMERAL_SERVER = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def child(built_image, marked_ca_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("child")
    (folder / "requirements.txt").write_text("tomli-w==1.2.0\n")
    record = folder / "child.json"
    parent = tmp_path_factory.mktemp("parent") / "image.json"
    parent.write_text(built_image.model_dump_json())
    result = run_builder(
        "build",
        "--requirements",
        str(folder / "requirements.txt"),
        "--name",
        f"{TEST_REPOSITORY}-child",
        "--parent",
        built_image.local_tags[0],
        "--ca-bundle",
        str(marked_ca_bundle),
        "--record",
        str(record),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return read_record(record)


def test_child_runs_a_flow_under_tini_as_the_user_with_the_package_baked_in(docker_client, child):
    # No network and no EXTRA_PIP_PACKAGES: nothing can be installed at start. The flow runs
    # against Prefect's ephemeral server, which must start inside Prefect's 20 s default; on a
    # loaded 2-core CI machine it may not, so the bound is longer (and still bounded).
    done = run_and_wait(
        docker_client,
        child.image_id,
        ["python3", "-c", FLOW],
        network_disabled=True,
        environment=EPHEMERAL_SERVER,
    )
    assert done.exit_code == 0, done.stderr[-3000:]
    assert "installing EXTRA_PIP_PACKAGES" not in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "pid1": "/usr/bin/tini",
        "uid": 1000,
        "toml": "a = 1",
    }


def test_child_is_its_parent_plus_one_layer_without_the_ca_bundle(
    docker_client, built_image, child
):
    parent_layers = docker_client.images.get(built_image.image_id).attrs["RootFS"]["Layers"]
    child_layers = docker_client.images.get(child.image_id).attrs["RootFS"]["Layers"]
    assert child_layers[: len(parent_layers)] == parent_layers
    assert len(child_layers) == len(parent_layers) + 1
    history = docker_client.api.history(child.image_id)
    assert not [step for step in history if "build-ca.pem" in step.get("CreatedBy", "")]


def test_child_tags_name_its_contents_and_its_parent(docker_client, built_image, child):
    labels = child.labels
    parent = docker_client.images.get(built_image.image_id)
    pushed = [digest.rsplit("@", 1)[1] for digest in parent.attrs.get("RepoDigests") or []]
    assert labels["org.opencontainers.image.base.digest"] in {built_image.image_id, *pushed}
    assert labels["io.prefect-aci.variant"] == "child"
    versions = built_image.versions
    minor = ".".join(versions["python"].split(".")[:2])
    [tag, latest] = child.local_tags
    assert tag.startswith(f"{TEST_REPOSITORY}-child:{versions['prefect']}-python{minor}-")
    assert latest == f"{TEST_REPOSITORY}-child:latest"
    result = run_builder("tags", "--image", child.image_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [tag.split(":", 1)[1]]


def test_the_lock_is_hashed_and_pins_the_parents_packages(child):
    from prefect_aci.core.paths import BUILD_DIR

    lock = (BUILD_DIR / "images" / f"{TEST_REPOSITORY}-child" / "requirements.lock").read_text()
    assert "tomli-w==1.2.0" in lock and "--hash=sha256:" in lock


def test_requirements_that_do_not_resolve_are_one_error_and_no_image(
    docker_client, built_image, tmp_path
):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic<2\n")
    name = f"{TEST_REPOSITORY}-unresolvable"
    result = run_builder(
        "build",
        "--requirements",
        str(requirements),
        "--name",
        name,
        "--parent",
        built_image.local_tags[0],
        "--record",
        str(tmp_path / "child.json"),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = _error_lines(result.stderr)
    assert "could not resolve" in error and "pydantic" in error
    assert not docker_client.images.list(name=name)
    assert not (tmp_path / "child.json").exists()


@pytest.mark.slow  # runs the command in a subprocess
def test_requirements_without_a_name_is_a_clear_error(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tomli-w\n")
    result = run_builder("build", "--requirements", str(requirements))
    assert result.returncode == 1
    [error] = _error_lines(result.stderr)
    assert "--requirements FILE and --name NAME" in error
