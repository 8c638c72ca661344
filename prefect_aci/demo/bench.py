"""Flow runs through the ACI worker on the local ACI, timed: the demo deployment run one at a time
(warm image, median of several), and a burst of runs submitted at once. Where the time goes is read
from each run's own state history: waiting for a worker (its poll interval), Pending to Running
(the ARM deployment, the container group's start, the engine's start and the code pull), Running
to the end (the flow itself)."""

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.settings import temporary_settings
from rich.console import Console

from prefect_aci.core.errors import UserError
from prefect_aci.core.names import FLOW_NAME
from prefect_aci.core.records import ImageRecord
from prefect_aci.demo import stack
from prefect_aci.demo.flow_run import DEPLOYMENT, api_settings
from prefect_aci.demo.local_azure import load_side
from prefect_aci.demo.state import Stack

TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


@dataclass
class RunTiming:
    total_s: float  # run_deployment to a final state
    to_pending_s: float  # created until a worker took it
    pending_to_running_s: float  # ARM deployment, group start, engine start, code pull
    running_to_end_s: float  # the flow


@dataclass
class LocalAciFigures:
    runs: list[RunTiming] = field(default_factory=list)
    burst_size: int = 0
    burst_last_s: float = 0.0
    burst_completed: int = 0
    groups_left: int = 0

    def median(self, name: str) -> float:
        return statistics.median(getattr(r, name) for r in self.runs)

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "median": {
                name: self.median(name)
                for name in ("total_s", "to_pending_s", "pending_to_running_s", "running_to_end_s")
            },
        }


def _timing(client, flow_run_id, total: float) -> RunTiming:
    states = sorted(client.read_flow_run_states(flow_run_id), key=lambda s: s.timestamp)
    first = {}
    for state in states:
        first.setdefault(state.type, state.timestamp)
    created = states[0].timestamp
    pending = first.get(StateType.PENDING, created)
    running = first.get(StateType.RUNNING, pending)
    end = states[-1].timestamp
    return RunTiming(
        total_s=round(total, 2),
        to_pending_s=round((pending - created).total_seconds(), 2),
        pending_to_running_s=round((running - pending).total_seconds(), 2),
        running_to_end_s=round((end - running).total_seconds(), 2),
    )


def measure(
    api: str, runs: int, burst: int, count_groups, auth_string: str | None = None
) -> LocalAciFigures:
    """``count_groups()`` says how many flow-run container groups exist (the worker's excluded);
    ``auth_string``: the server's basic-auth string, if it asks for one."""
    figures = LocalAciFigures(burst_size=burst)
    name = f"{FLOW_NAME}/{DEPLOYMENT}"
    settings = temporary_settings(api_settings(api, auth_string))
    with settings, get_client(sync_client=True) as client:
        for _ in range(runs):
            started = time.monotonic()
            flow_run = run_deployment(name, timeout=900)
            if flow_run.state.type != StateType.COMPLETED:
                raise UserError(
                    f"a timed run ended {flow_run.state.name}: {flow_run.state.message}"
                )
            figures.runs.append(_timing(client, flow_run.id, time.monotonic() - started))
        deployment = client.read_deployment_by_name(name)
        started = time.monotonic()
        submitted = [client.create_flow_run_from_deployment(deployment.id) for _ in range(burst)]
        deadline = started + 900
        pending = {flow_run.id for flow_run in submitted}
        while pending and time.monotonic() < deadline:
            for flow_run_id in list(pending):
                state = client.read_flow_run(flow_run_id).state
                if state and state.type in TERMINAL:
                    pending.discard(flow_run_id)
                    figures.burst_completed += state.type == StateType.COMPLETED
            time.sleep(1)
        figures.burst_last_s = round(time.monotonic() - started, 1)
    # The worker deletes each group once its run has ended; give the last deletions a moment.
    deadline = time.monotonic() + 60
    while (left := count_groups()) and time.monotonic() < deadline:
        time.sleep(2)
    figures.groups_left = left
    return figures


def bench_stack(
    client: docker.DockerClient,
    images: tuple[ImageRecord, ImageRecord],
    root: Path,
    runs: int,
    burst: int,
    console: Console,
) -> LocalAciFigures:
    """A stack of its own in ``root``, timed, then removed whatever happened."""
    try:
        state, _ = stack.up(client, *images, root, console)
        side = load_side(root / "local-azure")
        aci = side.aci(state.local_aci)

        def flow_run_groups() -> int:
            groups = aci.container_groups.list_by_resource_group(side.config.resource_group)
            return sum(1 for group in groups if group.name != state.worker_group)

        auth_string = Stack.load(client, root, console).auth_string()
        return measure(state.api, runs, burst, flow_run_groups, auth_string)
    finally:
        stack.down(client, root, console)
