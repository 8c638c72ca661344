"""Flow runs through the ACI workers on the local ACI, timed, cold and warm in the same stack.

One stack with a standby pool of N ready members has two work pools and two workers: the demo
deployment `key-vault-demo/aci` on the plain pool (cold: prefect-azure's worker creates a new
container group per run) and `key-vault-demo/aci-standby` on the standby pool (warm: its worker
claims a ready member, which has Prefect's engine imported and waits for the run). Measured:

- one run at a time, cold and warm in turn (medians of at least 5 each);
- a burst of runs submitted at once, cold then warm (time to the last, completed, claimed);
- a big burst (at most 50) at once through the plain pool's one worker: all completed? container
  groups left after, the worker container's peak memory from Docker's stats while it runs.

Where the time goes is read from each run's own state history: Scheduled to Pending (the worker's
poll), Pending to Running (the ARM deployment, the group's start or claim, the engine's import
when cold, the code pull from Blob storage), Running to Completed (the flow itself). Every wait
has a deadline.
"""

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import docker
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import temporary_settings
from rich.console import Console

from prefect_aci.core.errors import UserError
from prefect_aci.core.names import DEMO_DEPLOYMENT, DEMO_STANDBY_DEPLOYMENT, FLOW_NAME
from prefect_aci.core.records import AzureRecord, ImageRecord, read_record
from prefect_aci.demo import stack
from prefect_aci.demo.flow_run import api_settings, follow
from prefect_aci.demo.local_azure import load_side
from prefect_aci.demo.state import Stack
from prefect_aci.demo.warm import WarmWatch, wait_for_refill
from prefect_aci.local_aci.config import LABEL

COLD, WARM = "cold", "warm"
DEPLOYMENTS = {COLD: DEMO_DEPLOYMENT, WARM: DEMO_STANDBY_DEPLOYMENT}

# Bounds of the command's options.
MIN_RUNS, MAX_RUNS = 5, 20
MAX_BURST = 20
MAX_BIG_BURST = 50
MAX_STANDBY = 20
# Deadlines: one run, a burst (per run submitted, at least the floor), groups gone after a burst.
RUN_TIMEOUT_SECONDS = 300
BURST_TIMEOUT_FLOOR_SECONDS = 300
BURST_TIMEOUT_PER_RUN_SECONDS = 20
GROUPS_GONE_TIMEOUT_SECONDS = 180
REFILL_TIMEOUT_SECONDS = 180

# The state-history figures of a run, in seconds; the first two are the headline figures.
PHASES = (
    "scheduled_to_running_s",
    "scheduled_to_completed_s",
    "scheduled_to_pending_s",  # the worker's poll
    "pending_to_running_s",  # ARM deployment, group start or claim, import (cold), code pull
    "running_to_completed_s",  # the flow
    "observed_s",  # submission to the final state as this client saw it (polling every 0.5 s)
)

TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


@dataclass
class RunTiming:
    flow_run_id: str
    final: str  # the final state's type (COMPLETED, ...), or the last one seen at a deadline
    scheduled_to_running_s: float | None
    scheduled_to_completed_s: float | None
    scheduled_to_pending_s: float | None
    pending_to_running_s: float | None
    running_to_completed_s: float | None
    observed_s: float | None
    # Whether the run's group came from the standby pool (its GET while it ran); None: unread.
    warm: bool | None = None


def timing(
    flow_run_id: str,
    states: Iterable[tuple[str, datetime]],
    observed_s: float | None = None,
    warm: bool | None = None,
) -> RunTiming:
    """A run's figures from its state history, (state type, timestamp) in any order; a phase the
    run never reached is None."""
    history = sorted(states, key=lambda s: s[1])
    first: dict[str, datetime] = {}
    for kind, at in history:
        first.setdefault(str(kind), at)
    scheduled = first.get("SCHEDULED", history[0][1] if history else None)
    pending, running = first.get("PENDING"), first.get("RUNNING")
    completed = first.get("COMPLETED")

    def span(start: datetime | None, end: datetime | None) -> float | None:
        if start is None or end is None:
            return None
        return round((end - start).total_seconds(), 2)

    return RunTiming(
        flow_run_id=flow_run_id,
        final=str(history[-1][0]) if history else "NONE",
        scheduled_to_running_s=span(scheduled, running),
        scheduled_to_completed_s=span(scheduled, completed),
        scheduled_to_pending_s=span(scheduled, pending),
        pending_to_running_s=span(pending, running),
        running_to_completed_s=span(running, completed),
        observed_s=None if observed_s is None else round(observed_s, 2),
        warm=warm,
    )


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are known, rounded to 0.01; None when none is."""
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def ratio(warm: float | None, cold: float | None) -> float | None:
    """warm/cold, rounded to 0.01; None when either is unknown or cold is 0."""
    if warm is None or not cold:
        return None
    return round(warm / cold, 2)


@dataclass
class Burst:
    path: str  # cold or warm
    size: int
    completed: int = 0
    not_final: int = 0  # still not in a final state at the deadline
    # The earliest Scheduled to the latest Completed, from the runs' state histories.
    last_s: float | None = None
    # The first submission to the last final state, as this client saw it (polling every 1 s).
    observed_last_s: float | None = None
    claimed: int | None = None  # runs whose group came from the standby pool (None: not read)
    # Runs whose group was gone before a GET read it (the burst's loop reads each run in turn).
    claims_unread: int | None = None
    groups_left: int = 0  # the burst's flow-run container groups left 3 min after its end
    worker_peak_memory_mib: float | None = None  # the worker container's, from Docker's stats
    worker_memory_samples: int = 0
    runs: list[RunTiming] = field(default_factory=list)

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "runs"}
        out["median"] = {phase: median(getattr(r, phase) for r in self.runs) for phase in PHASES}
        out["runs"] = [asdict(r) for r in self.runs]
        return out


def last_span(runs: list[RunTiming], states: dict[str, list[tuple[str, datetime]]]) -> float | None:
    """The earliest Scheduled to the latest Completed among ``runs`` (by their state histories)."""
    starts, ends = [], []
    for run in runs:
        history = states.get(run.flow_run_id) or []
        starts += [at for kind, at in history if kind == "SCHEDULED"]
        ends += [at for kind, at in history if kind == "COMPLETED"]
    if not starts or not ends:
        return None
    return round((max(ends) - min(starts)).total_seconds(), 2)


@dataclass
class BenchFigures:
    standby: int  # the standby pool's ready members
    runs: dict[str, list[RunTiming]] = field(default_factory=lambda: {COLD: [], WARM: []})
    bursts: dict[str, Burst] = field(default_factory=dict)  # cold, warm
    big_burst: Burst | None = None  # on the plain pool (cold); None: skipped

    def median(self, path: str, phase: str) -> float | None:
        return median(getattr(r, phase) for r in self.runs[path])

    def figures(self) -> dict[str, dict[str, float | None]]:
        """Per phase: the cold and warm medians of the runs one at a time, and warm/cold."""
        out = {}
        for phase in PHASES:
            cold, warm = self.median(COLD, phase), self.median(WARM, phase)
            out[phase] = {COLD: cold, WARM: warm, "warm_over_cold": ratio(warm, cold)}
        return out

    def goal(self) -> dict[str, bool | None]:
        """Issue 20's goal, locally: warm Scheduled to Running at most 0.5 of cold, one warm run
        Scheduled to Completed under 5 s, the big burst all Completed with no group left."""
        figures = self.figures()
        to_running = figures["scheduled_to_running_s"]["warm_over_cold"]
        warm_total = figures["scheduled_to_completed_s"][WARM]
        big = self.big_burst
        return {
            "scheduled_to_running_warm_over_cold_at_most_0_5": (
                None if to_running is None else to_running <= 0.5
            ),
            "scheduled_to_completed_warm_under_5_s": (
                None if warm_total is None else warm_total < 5.0
            ),
            "big_burst_all_completed_no_group_left": (
                None if big is None else big.completed == big.size and big.groups_left == 0
            ),
        }

    def as_dict(self) -> dict:
        warm_runs = self.runs[WARM]
        return {
            "standby_pool_size": self.standby,
            "runs_each": len(self.runs[COLD]),
            "figures": self.figures(),
            "warm_runs_claimed": sum(1 for r in warm_runs if r.warm),
            "goal": self.goal(),
            "one_at_a_time": {path: [asdict(r) for r in runs] for path, runs in self.runs.items()},
            "burst": {path: burst.summary() for path, burst in self.bursts.items()},
            "big_burst": None if self.big_burst is None else self.big_burst.summary(),
        }


def container_memory_bytes(stats: dict) -> int | None:
    """Memory in use as `docker stats` shows it: usage less the inactive page cache (cgroup v2's
    inactive_file, v1's total_inactive_file)."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(usage - cache, 0)


class PeakMemory:
    """Samples the containers' memory from Docker's stats in a thread while the block runs; the
    peak of their sum, in MiB."""

    def __init__(self, containers: list) -> None:
        self.containers = containers
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            total, known = 0, False
            for container in self.containers:
                try:
                    used = container_memory_bytes(container.stats(stream=False))
                except docker.errors.APIError:
                    used = None
                if used is not None:
                    total, known = total + used, True
            if known:
                self.peak_bytes = max(self.peak_bytes, total)
                self.samples += 1
            self._stop.wait(0.5)

    def __enter__(self) -> "PeakMemory":
        if self.containers:
            self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def peak_mib(self) -> float | None:
        return round(self.peak_bytes / 2**20, 1) if self.samples else None


class Bench:
    """The measurements on a running stack: ``api`` its Prefect server, ``watch(path)`` a fresh
    WarmWatch, ``refill()`` waits for the standby pool to be back to its size, ``groups()`` the
    flow-run container groups' names, ``workers(path)`` the path's worker container(s)."""

    def __init__(
        self,
        api: str,
        auth_string: str | None,
        watch: Callable[[], WarmWatch],
        refill: Callable[[], tuple[int, int]],
        groups: Callable[[], set[str]],
        workers: Callable[[str], list],
        console: Console,
    ) -> None:
        self.api, self.auth_string = api, auth_string
        self.watch, self.refill, self.groups, self.workers = watch, refill, groups, workers
        self.console = console

    def _states(self, client, flow_run_id) -> list[tuple[str, datetime]]:
        return [(s.type.value, s.timestamp) for s in client.read_flow_run_states(flow_run_id)]

    def one(self, client, deployment_id, path: str) -> RunTiming:
        """One run of ``path``'s deployment, alone, to its end (or RUN_TIMEOUT_SECONDS)."""
        watch = self.watch()
        started = time.monotonic()
        flow_run = client.create_flow_run_from_deployment(deployment_id)
        flow_run = follow(client, flow_run, RUN_TIMEOUT_SECONDS, f"a timed {path} run", watch)
        observed = time.monotonic() - started
        if flow_run.state.type != StateType.COMPLETED:
            raise UserError(
                f"a timed {path} run ({flow_run.id}) ended {flow_run.state.name}: "
                f"{flow_run.state.message}"
            )
        return timing(str(flow_run.id), self._states(client, flow_run.id), observed, watch.warm)

    def burst(self, client, deployment_id, path: str, size: int, claims: bool) -> Burst:
        """``size`` runs of ``path``'s deployment submitted at once, to their ends (or a
        deadline); ``claims``: read each run's group for whether it was claimed."""
        burst = Burst(path=path, size=size)
        timeout = max(BURST_TIMEOUT_FLOOR_SECONDS, BURST_TIMEOUT_PER_RUN_SECONDS * size)
        with PeakMemory(self.workers(path)) as memory:
            started = time.monotonic()
            submitted = [client.create_flow_run_from_deployment(deployment_id) for _ in range(size)]
            watches = {run.id: self.watch() for run in submitted} if claims else {}
            observed: dict = {}
            last = {run.id: run for run in submitted}
            deadline = started + timeout
            while len(observed) < size and time.monotonic() < deadline:
                for run_id in [i for i in last if i not in observed]:
                    flow_run = client.read_flow_run(run_id)
                    last[run_id] = flow_run
                    if run_id in watches:
                        watches[run_id](flow_run)
                    if flow_run.state and flow_run.state.type in TERMINAL:
                        observed[run_id] = time.monotonic() - started
                time.sleep(1)
            burst.observed_last_s = round(max(observed.values()), 1) if observed else None
        burst.worker_peak_memory_mib = memory.peak_mib
        burst.worker_memory_samples = memory.samples
        states = {}
        for run_id, flow_run in last.items():
            states[str(run_id)] = self._states(client, run_id)
            watch = watches.get(run_id)
            burst.runs.append(
                timing(str(run_id), states[str(run_id)], observed.get(run_id), watch and watch.warm)
            )
            state = flow_run.state
            burst.completed += bool(state and state.type == StateType.COMPLETED)
            burst.not_final += run_id not in observed
        burst.last_s = last_span(burst.runs, states)
        if claims:
            burst.claimed = sum(1 for r in burst.runs if r.warm)
            burst.claims_unread = sum(1 for r in burst.runs if r.warm is None)
        names = {f"{FLOW_NAME}-{r.flow_run_id}" for r in burst.runs}
        burst.groups_left = self.wait_groups_gone(names)
        return burst

    def wait_groups_gone(self, names: set[str] | None = None) -> int:
        """Wait (at most GROUPS_GONE_TIMEOUT_SECONDS) until no flow-run group (of ``names``, if
        given) is left; the worker deletes each once its run has ended. How many are left."""
        deadline = time.monotonic() + GROUPS_GONE_TIMEOUT_SECONDS
        while True:
            left = self.groups()
            if names is not None:
                left &= {n.lower() for n in names}
            if not left or time.monotonic() > deadline:
                return len(left)
            time.sleep(2)

    def measure(self, standby: int, runs: int, burst: int, big_burst: int) -> BenchFigures:
        figures = BenchFigures(standby=standby)
        say = self.console.print
        with (
            temporary_settings(api_settings(self.api, self.auth_string)),
            get_client(sync_client=True) as client,
        ):
            ids = {
                path: client.read_deployment_by_name(f"{FLOW_NAME}/{name}").id
                for path, name in DEPLOYMENTS.items()
            }
            # Cold and warm in turn, so that both see the same machine; before a warm run the
            # pool is back to its size, so it has a member to claim.
            for i in range(runs):
                for path in (COLD, WARM):
                    self.wait_groups_gone()
                    if path == WARM:
                        self.refill()
                    run = self.one(client, ids[path], path)
                    figures.runs[path].append(run)
                    say(
                        f"  {path} run {i + 1}/{runs}: Scheduled to Running "
                        f"{run.scheduled_to_running_s} s, to Completed "
                        f"{run.scheduled_to_completed_s} s"
                        + (f" (claimed: {run.warm})" if path == WARM else ""),
                        highlight=False,
                    )
            for path in (COLD, WARM):
                self.wait_groups_gone()
                self.refill()
                say(f"  {burst} {path} runs at once ...", highlight=False)
                figures.bursts[path] = self.burst(client, ids[path], path, burst, claims=True)
            if big_burst:
                self.wait_groups_gone()
                say(f"  {big_burst} cold runs at once through one worker ...", highlight=False)
                figures.big_burst = self.burst(client, ids[COLD], COLD, big_burst, claims=False)
        return figures


def check_options(
    runs: int, burst: int, big_burst: int, standby: int, min_runs: int = MIN_RUNS
) -> None:
    """One error line for an option out of its bounds (the command's options check them too;
    `prefect-aci bench` passes its own --runs)."""
    if not min_runs <= runs <= MAX_RUNS:
        raise UserError(f"--runs must be {MIN_RUNS} to {MAX_RUNS} (medians of at least 5)")
    if not 1 <= burst <= MAX_BURST:
        raise UserError(f"--burst must be 1 to {MAX_BURST}")
    if not 0 <= big_burst <= MAX_BIG_BURST:
        raise UserError(f"--big-burst must be 0 (skip it) to {MAX_BIG_BURST}")
    if not 1 <= standby <= MAX_STANDBY:
        raise UserError(f"--standby must be 1 to {MAX_STANDBY} (ready members of the pool)")


def bench_stack(
    client: docker.DockerClient,
    images: tuple[ImageRecord, ImageRecord],
    root: Path,
    runs: int,
    burst: int,
    console: Console,
    big_burst: int = MAX_BIG_BURST,
    standby: int = 10,
    minimum_runs: int = MIN_RUNS,
) -> BenchFigures:
    """A stack of its own in ``root`` with a standby pool of ``standby``, timed, then removed
    whatever happened. ``minimum_runs`` lowers the floor of ``runs``, for a quick try only."""
    check_options(runs, burst, big_burst, standby, minimum_runs)
    try:
        state, _ = stack.up(client, *images, root, console, standby=standby)
        loaded = Stack.load(client, root, console)
        side = load_side(root / "local-azure")
        aci = side.aci(state.local_aci)
        resources = side.resources(state.local_aci)
        azure = read_record(loaded.azure_record, AzureRecord)
        resource_group = side.config.resource_group
        stack_label = f"{LABEL}.stack={side.config.wiring.stack_id}"
        worker_groups = {COLD: state.worker_group, WARM: state.standby_worker_group}
        if not azure.standby_pool_id or not state.standby_worker_group:
            raise UserError("the bench stack came up without its standby pool; see its log above")

        def flow_run_groups() -> set[str]:
            prefix = f"{FLOW_NAME}-"
            return {
                g.name.lower()
                for g in aci.container_groups.list_by_resource_group(resource_group)
                if g.name.lower().startswith(prefix)
            }

        def workers(path: str) -> list:
            key = f"{resource_group}/{worker_groups[path]}".lower()
            return client.containers.list(filters={"label": [stack_label, f"{LABEL}.group={key}"]})

        def refill() -> tuple[int, int]:
            return wait_for_refill(resources, azure.standby_pool_id, REFILL_TIMEOUT_SECONDS)

        bench = Bench(
            state.api,
            loaded.auth_string(),
            watch=lambda: WarmWatch(resources, side.config.resource_group_id, FLOW_NAME),
            refill=refill,
            groups=flow_run_groups,
            workers=workers,
            console=console,
        )
        return bench.measure(standby, runs, burst, big_burst)
    finally:
        stack.down(client, root, console)
