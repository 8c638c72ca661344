"""`prefect-aci image build` against the real engine: failures are one clear line."""

import shutil

import pytest

from image_builder.settings import DOCKER_DIR
from tests.conftest import run_builder


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_failing_dockerfile_step_exits_non_zero_naming_the_step(docker_client, tmp_path):
    broken = tmp_path / "docker"
    shutil.copytree(DOCKER_DIR, broken)
    dockerfile = broken / "Dockerfile"
    text = dockerfile.read_text()
    marker = "COPY requirements.lock /tmp/build/"
    assert marker in text
    dockerfile.write_text(text.replace(marker, "RUN exit 7\n" + marker, 1))
    result = run_builder(
        "build",
        "--offline-fallback",
        "--repository",
        "prefect-aci-broken",
        "--record",
        str(tmp_path / "image.json"),
        env={"PREFECT_ACI_DOCKER_DIR": str(broken)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = _error_lines(result.stderr)
    assert "build failed at step" in error
    assert "RUN exit 7" in error
    assert "returned a non-zero code: 7" in error
    assert not (tmp_path / "image.json").exists()


def test_missing_base_that_cannot_be_pulled_names_the_offline_command(docker_client, tmp_path):
    result = run_builder(
        "build",
        "--base",
        "prefect-aci-test/no-such-base:0",
        "--record",
        str(tmp_path / "image.json"),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = _error_lines(result.stderr)
    assert "prefect-aci-test/no-such-base:0" in error
    assert "prefect-aci image base --offline" in error


def test_missing_ca_bundle_is_a_clear_error(docker_client, tmp_path):
    result = run_builder(
        "build",
        "--offline-fallback",
        "--ca-bundle",
        str(tmp_path / "nope.pem"),
        "--record",
        str(tmp_path / "image.json"),
    )
    assert result.returncode == 1
    [error] = _error_lines(result.stderr)
    assert "nope.pem does not exist" in error


@pytest.mark.slow  # runs the command in a subprocess
def test_malformed_build_arg_is_a_clear_error(tmp_path):
    result = run_builder("build", "--build-arg", "NOEQUALS", "--record", str(tmp_path / "i.json"))
    assert result.returncode == 1
    [error] = _error_lines(result.stderr)
    assert "NAME=VALUE" in error


@pytest.mark.slow  # runs the command in a subprocess
def test_no_engine_is_a_clear_error(tmp_path):
    result = run_builder(
        "build",
        "--record",
        str(tmp_path / "i.json"),
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = _error_lines(result.stderr)
    assert "no Docker engine answers" in error
    assert "ensure-docker.sh" in error


@pytest.mark.slow  # runs the command in a subprocess
def test_tags_before_building_is_a_clear_error(tmp_path):
    result = run_builder("tags", "--record", str(tmp_path / "missing.json"))
    assert result.returncode == 1
    [error] = _error_lines(result.stderr)
    assert "build the image first" in error


def test_tags_are_read_from_the_image(docker_client, built_image, tmp_path):
    record = tmp_path / "image.json"
    record.write_text(built_image.model_dump_json())
    result = run_builder("tags", "--record", str(record), "--latest")
    assert result.returncode == 0, result.stderr
    versions = built_image.versions
    minor = ".".join(versions["python"].split(".")[:2])
    prefect = versions["prefect"]
    major_minor = ".".join(prefect.split(".")[:2])
    printed = result.stdout.split()
    assert printed[:3] == [
        f"{prefect}-python{minor}",
        f"{major_minor}-python{minor}",
        f"{prefect.split('.')[0]}-python{minor}",
    ]
    assert printed[-1] == "latest"


def test_a_trim_that_breaks_an_import_is_one_error_and_no_image(docker_client, tmp_path):
    broken = tmp_path / "docker"
    shutil.copytree(DOCKER_DIR, broken)
    trim = broken / "trim.py"
    marker = '    _report("pip", doomed)'
    assert marker in trim.read_text()
    trim.write_text(
        trim.read_text().replace(marker, '    doomed.append(SITE / "azure/keyvault")\n' + marker)
    )
    repository = "prefect-aci-test-image-broken-trim"
    result = run_builder(
        "build",
        "--offline-fallback",
        "--repository",
        repository,
        "--record",
        str(tmp_path / "image.json"),
        env={"PREFECT_ACI_DOCKER_DIR": str(broken)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = _error_lines(result.stderr)
    assert "import azure.keyvault.secrets failed after the trims" in error
    assert "check.py" in error
    assert not docker_client.images.list(name=repository)
    assert not (tmp_path / "image.json").exists()


@pytest.mark.slow  # runs the command in a subprocess
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--python", "3.9"], "unknown Python version '3.9'; choose one of 3.11, 3.12, 3.13"),
        (["--keep", "docs"], "--keep takes a trim name; got docs"),
    ],
)
def test_bad_build_options_are_one_error(args, expected, tmp_path):
    result = run_builder("build", *args, "--record", str(tmp_path / "image.json"))
    assert result.returncode == 1
    [error] = _error_lines(result.stderr)
    assert expected in error


def test_python_312_offline_says_no_debian_release_has_it(docker_client, tmp_path):
    # A registry that refuses connections stands for Docker Hub out of reach, on any machine.
    result = run_builder(
        "build",
        "--python",
        "3.12",
        "--base",
        "127.0.0.1:9/python:3.12-slim-bookworm",
        "--offline-fallback",
        "--repository",
        "prefect-aci-test-image-312",
        "--record",
        str(tmp_path / "image.json"),
    )
    assert result.returncode == 1
    [error] = _error_lines(result.stderr)
    assert "no offline base has Python 3.12" in error
    assert "bookworm has 3.11, trixie 3.13" in error
