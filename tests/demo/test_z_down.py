"""`prefect-aci demo down` removes what `up` started and nothing else. (This file's name sorts last
in its folder: pytest runs it after the other tests of the shared stack.)"""

import time

import pytest
from docker.errors import NotFound

from prefect_aci.demo.stack import network_name, server_container, stack_id
from prefect_aci.local_aci.groups import LABEL
from tests.demo.conftest import demo


@pytest.fixture
def another_stacks_part(docker_client, built_image):
    """A container labelled as part of another stack, as a user's `make demo` would have."""
    container = docker_client.containers.run(
        built_image.image_id,
        ["sleep", "600"],
        detach=True,
        labels={f"{LABEL}.stack": "another-stack"},
        network_mode="none",
    )
    yield container
    container.remove(force=True)


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


def test_demo_down_removes_what_up_started_and_nothing_else(
    stack, docker_client, another_stacks_part
):
    down = demo("down", state_dir=stack.folder, timeout=300)
    assert down.returncode == 0, down.stderr
    with pytest.raises(NotFound):
        docker_client.containers.get(server_container(stack.folder))
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{LABEL}.stack={stack_id(stack.folder)}"}
    )
    with pytest.raises(NotFound):
        docker_client.networks.get(network_name(stack.folder))
    assert not (stack.folder / "state.json").exists()
    assert [pid for pid in stack.state["pids"].values() if not gone(pid)] == []
    another_stacks_part.reload()
    assert another_stacks_part.status == "running"
    status = demo("status", state_dir=stack.folder, timeout=120)
    assert status.returncode == 0 and "No demo stack was started" in status.stderr
