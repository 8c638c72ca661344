"""Shared fixtures: a real Docker engine and the image built once per session by our builder."""

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import certifi
import docker
import pytest
from docker.errors import DockerException

from image_builder.local_registry import LocalRegistry, free_port
from image_builder.settings import detect_ca_bundle
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import ImageRecord, read_record

# Where the session tags the image it builds; two checkouts testing on one engine at once set
# different names, or one's tags would move under the other.
TEST_REPOSITORY = os.environ.get("PREFECT_ACI_TEST_REPOSITORY", "prefect-aci-test")
# Fixtures that need the Docker engine, the built image or a server: a test using any of them is
# marked `slow` and left out of the fast lane (make test-fast). Tests that run the command in a
# subprocess, or checkov, carry the mark themselves.
SLOW_FIXTURES = {
    "docker_client",
    "built_image",
    "server_image",
    "image",
    "registry",
    "prefect_server",
    "prefect_api",  # tests/arm/conftest.py: `prefect server start` in a subprocess
    "docker_services",
    "prefect_process_server",
}
# The account of the htpasswd-protected registry the `registry` fixture starts.
REGISTRY_USER, REGISTRY_PASSWORD = "pusher", "s3cret-registry-pw"
# Appended to the build's CA bundle: found in a layer of the final image, it proves a leak.
# Fixed text, so that the build cache holds from one test session to the next.
CA_MARKER = "# prefect-aci test marker: this CA bundle belongs to the build stage only"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def run_cli(*args: str, env: dict[str, str | None] | None = None, timeout: int = 1500):
    """Run the `prefect-aci` command as a user would; ``None`` in env unsets a variable."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "prefect_aci", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={name: value for name, value in merged.items() if value is not None},
        timeout=timeout,
    )


def run_builder(*args: str, env: dict[str, str | None] | None = None, timeout: int = 1500):
    """`prefect-aci image ...`."""
    return run_cli("image", *args, env=env, timeout=timeout)


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on a free loopback port, with htpasswd auth."""
    with LocalRegistry(tmp_path / "registry", users={REGISTRY_USER: REGISTRY_PASSWORD}) as local:
        yield local


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except DockerException as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run scripts/ensure-docker.sh first")
    return client


@pytest.fixture(scope="session")
def marked_ca_bundle(tmp_path_factory) -> Path:
    """The machine's CA bundle (it may be needed to reach PyPI) plus a marker line."""
    source = detect_ca_bundle(None) or Path(certifi.where())
    bundle = tmp_path_factory.mktemp("ca") / "build-ca.pem"
    bundle.write_text(source.read_text() + f"\n{CA_MARKER}\n")
    return bundle


def _build(folder: Path, ca_bundle: Path, *extra: str) -> ImageRecord:
    """`prefect-aci image build` as `make image` runs it (offline base when needed)."""
    record = folder / "image.json"
    result = run_builder(
        "build",
        "--offline-fallback",
        *extra,
        "--repository",
        TEST_REPOSITORY,
        "--ca-bundle",
        str(ca_bundle),
        "--record",
        str(record),
    )
    assert result.returncode == 0, f"build {' '.join(extra)} failed:\n{result.stderr[-4000:]}"
    return read_record(record)


@pytest.fixture(scope="session")
def built_image(docker_client, marked_ca_bundle, tmp_path_factory) -> ImageRecord:
    """The image, built by `prefect-aci image build`."""
    return _build(tmp_path_factory.mktemp("build"), marked_ca_bundle)


@pytest.fixture(scope="session")
def image(built_image) -> str:
    return built_image.image_id


@pytest.fixture(scope="session")
def server_image(built_image, marked_ca_bundle, tmp_path_factory) -> ImageRecord:
    """The server variant (`--server`: the image plus the UI and bytecode the trims set aside),
    what `prefect server start` runs from; built after the image, from its cached stages."""
    return _build(tmp_path_factory.mktemp("build-server"), marked_ca_bundle, "--server")


@pytest.fixture(scope="session")
def host_ca_bundle() -> Path:
    """A CA bundle for pip inside containers (the machine may sit behind a TLS proxy)."""
    return detect_ca_bundle(None) or Path(certifi.where())


# pytest-docker, with Debian's docker-compose (v1: `up -d`, no `--wait`).
@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_compose_file(server_image) -> str:
    os.environ["PREFECT_ACI_TEST_IMAGE"] = server_image.local_tags[0]
    return str(PROJECT_ROOT / "tests" / "docker-compose.yml")


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=5):  # noqa: S310
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def prefect_server(docker_services, docker_ip, docker_client, docker_compose_project_name):
    """`prefect server start` from our image (tests/docker-compose.yml); yields its API URL."""
    port = docker_services.port_for("prefect-server", 4200)
    api = f"http://{docker_ip}:{port}/api"
    try:
        docker_services.wait_until_responsive(check=lambda: _healthy(api), timeout=180, pause=1)
    except Exception:
        label = f"com.docker.compose.project={docker_compose_project_name}"
        logs = [
            c.logs().decode()[-3000:]
            for c in docker_client.containers.list(all=True, filters={"label": label})
        ]
        pytest.fail(f"the Prefect server did not answer {api}/health in 180 s:\n" + "\n".join(logs))
    return api


@contextlib.contextmanager
def server_process(folder: Path, port: int, settings: dict[str, str]) -> Iterator[str]:
    """`prefect server start` of this environment in a subprocess on 127.0.0.1:``port``, with its
    own PREFECT_HOME in ``folder``, none of this machine's Prefect settings and ``settings``;
    yields its API URL once it is healthy (at most 120 s), and stops it afterwards."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **settings,
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    log_path = folder / "server.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(api):
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


@pytest.fixture(scope="session")
def prefect_process_server(tmp_path_factory):
    """A Prefect server in a subprocess (server_process): no Docker, and the server's services
    (events, triggers, actions) run as they do in a deployed server. Yields its API URL."""
    with server_process(tmp_path_factory.mktemp("prefect-server"), free_port(), {}) as api:
        yield api
