"""A stack whose stand-in stopped under it (the machine or the Docker engine restarted) leaves
container groups that their restart policy brings back with the engine; the next `demo up` removes
those, and nothing of a stack whose stand-in runs."""

import contextlib
import uuid

from docker.errors import NotFound
from rich.console import Console

from prefect_aci.demo.stack import reap_dead_stacks
from prefect_aci.local_aci.config import LABEL


def _started(client, image: str, labels: dict[str, str]):
    return client.containers.run(
        image, ["sleep", "600"], detach=True, labels=labels, network_mode="none"
    )


def test_groups_of_a_stopped_stack_go_and_a_running_stacks_stay(docker_client, built_image):
    dead, alive = (f"reap-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    made = []
    try:
        for stack in (dead, alive):
            made.append(
                _started(
                    docker_client,
                    built_image.image_id,
                    {f"{LABEL}.stack": stack, f"{LABEL}.role": "stand-in"},
                )
            )
            made.append(
                _started(
                    docker_client,
                    built_image.image_id,
                    {f"{LABEL}.stack": stack, f"{LABEL}.group": f"rg/worker-{stack}"},
                )
            )
        dead_stand_in, dead_group, alive_stand_in, alive_group = made
        dead_stand_in.kill()
        console = Console(record=True, width=200)

        reap_dead_stacks(docker_client, console)

        remaining = {c.id for c in docker_client.containers.list(all=True)}
        assert dead_group.id not in remaining
        assert {dead_stand_in.id, alive_stand_in.id, alive_group.id} <= remaining
        assert f"Removed 1 container(s) of the stopped stack {dead}" in console.export_text()
    finally:
        for container in made:
            with contextlib.suppress(NotFound):
                container.remove(force=True)
