"""`python -m local_demo up` end to end, as `make demo` runs it, then `down`.

The stand-ins are real: Debian's docker-registry, Azurite from npm, a Prefect server from our
image, and prefect-docker's worker running the flow in our image from the local registry."""

import json
import subprocess
import sys
import time

import docker
import pytest
from docker.errors import NotFound

from image_builder.settings import PROJECT_ROOT
from local_demo.cli import DEMO_DIR
from local_demo.stack import SERVER_CONTAINER


def local_demo(*args, record=None, timeout=1200):
    extra = ["--record", str(record)] if record else []
    return subprocess.run(
        [sys.executable, "-m", "local_demo", *args, *extra],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def demo_run(built_image, tmp_path_factory):
    record = tmp_path_factory.mktemp("demo") / "image.json"
    record.write_text(built_image.model_dump_json())
    result = local_demo("up", record=record)
    state = json.loads((DEMO_DIR / "state.json").read_text())
    yield result, state
    local_demo("down")


def test_demo_flow_run_completes(demo_run):
    result, _ = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "flow run" in result.stderr and ": Completed" in result.stderr


def test_demo_flow_ran_under_tini_in_our_image(demo_run):
    result, _ = demo_run
    assert "Process 1 of this container is /usr/bin/tini" in result.stderr


def test_demo_flow_code_came_from_azurite(demo_run):
    result, _ = demo_run
    assert "Executing deployment step: pull_with_block" in result.stderr
    assert "Deployment step 'pull_with_block' completed successfully" in result.stderr
    assert "reading 1 secret(s) from Prefect Secret blocks" in result.stderr


def test_demo_image_came_through_the_local_registry(demo_run, built_image):
    pushed = json.loads((DEMO_DIR / "image.json").read_text())
    assert pushed["reference"].startswith("127.0.0.1:")
    assert pushed["image_id"] == built_image.image_id


def test_demo_down_removes_what_up_started(demo_run):
    _, state = demo_run
    down = local_demo("down")
    assert down.returncode == 0, down.stderr
    client = docker.from_env()
    with pytest.raises(NotFound):
        client.containers.get(SERVER_CONTAINER)
    assert not (DEMO_DIR / "state.json").exists()
    assert [pid for pid in state["pids"].values() if not gone(pid)] == []


def gone(pid: int) -> bool:
    """Ended, or a zombie waiting for init: `up` spawned it and has exited since."""
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False
