"""The debootstrap base: slim like Docker's slim images, Python usable, reused when present."""

import json

import pytest

from image_builder.settings import OFFLINE_BASE_IMAGE
from tests.conftest import run_builder
from tests.containers import run_and_wait

SLIM_PROBE = """
import json, pathlib, sys, venv
def files(p):
    return [str(f) for f in pathlib.Path(p).rglob("*") if f.is_file()]
docs = [f for f in files("/usr/share/doc") if not f.endswith("/copyright")]
print(json.dumps({
    "python": sys.version_info[:2] >= (3, 11),
    "docs": len(docs), "man": len(files("/usr/share/man")),
    "locale": len(files("/usr/share/locale")),
    "apt_lists": len(files("/var/lib/apt/lists")),
    "debs": len(list(pathlib.Path("/var/cache/apt").rglob("*.deb"))),
    "ensurepip": pathlib.Path(venv.__file__).exists() and __import__("ensurepip") is not None,
    "ca": pathlib.Path("/etc/ssl/certs/ca-certificates.crt").is_file(),
}))
"""


@pytest.fixture(scope="module")
def offline_base(docker_client) -> str:
    result = run_builder("base", "--offline")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == OFFLINE_BASE_IMAGE
    return OFFLINE_BASE_IMAGE


def test_offline_base_is_slim_and_has_python(docker_client, offline_base):
    done = run_and_wait(docker_client, offline_base, ["python3", "-c", SLIM_PROBE])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {
        "python": True,
        "docs": 0,
        "man": 0,
        "locale": 0,
        "apt_lists": 0,
        "debs": 0,
        "ensurepip": True,
        "ca": True,
    }


def test_offline_base_is_reused_when_present(docker_client, offline_base):
    before = docker_client.images.get(offline_base).id
    result = run_builder("base", "--offline")
    assert result.returncode == 0, result.stderr
    assert "Reusing offline base" in result.stderr
    assert docker_client.images.get(offline_base).id == before


@pytest.mark.slow  # runs the command in a subprocess
def test_base_without_offline_flag_is_a_clear_error():
    result = run_builder("base")
    assert result.returncode == 1
    assert "only --offline is supported" in result.stderr
