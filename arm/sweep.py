"""`prefect-aci azure sweep`: what prefect-azure's ACI worker leaves behind in the resource group.

The worker deletes a flow run's container group in a `finally` with a 30 s timeout: when the
worker dies or the delete times out, the group outlives its run and keeps billing. Every flow run
is also an ARM deployment (`prefect-<group name>`) the worker never deletes: a resource group keeps
at most 800, and each keeps the template the worker submitted, PREFECT_API_KEY in it.

The sweep reads everything first (container groups, deployments, the flow runs in the Prefect
API) and only then acts. It reconciles: a Pending or Running flow run of the pool whose group
ended (its container terminated, or the group stopped or failed to provision) or is gone gets the
final state its engine never reported, Crashed with why (the exit code; 137: out of memory or
evicted), the container's last log lines first written to the run's logs; a grace window
(PREFECT_ACI_SWEEP_GRACE_SECONDS) leaves a run whose group just ended to its engine and worker.
Then it deletes: container groups whose flow run is over (Completed, Failed, Crashed, Cancelled,
or just ended by the sweep) or unknown to the Prefect API; and flow-run deployments older than a
given age. It touches nothing else. A group is a flow run's only when its name is
`<slugified flow name>-<flow run id>` (prefect_azure/workers/container_instance.py) AND one of its
containers carries PREFECT__FLOW_RUN_ID with that id (Prefect's worker sets it); the worker's own
group `<prefix>-worker` is never a candidate. The sweep first checks that the Prefect API serves
the worker's work pool: pointed at another workspace, every run would look unknown.
"""

import contextlib
import datetime
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from prefect import get_client
from prefect.client.schemas.actions import LogCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.settings import temporary_settings
from prefect.states import Crashed

from arm.deploy import Infra, NotFound, arm_call, worker_group_name
from arm.settings import SweepSettings
from prefect_aci.core.errors import UserError
from prefect_aci.core.prefect_api import client_settings, prefect_api_errors
from prefect_aci.core.settings import DURATION_RULE, GUID_PATTERN, duration

# What the sweep calls, as Azure RBAC actions: the worker role (template and
# arm/prefect-aci-role.json) holds all of them, so it runs with the worker identity's rights.
SWEEP_ACTIONS = {
    "Microsoft.ContainerInstance/containerGroups/read": "container_groups.list_by_resource_group, "
    "container_groups.get",
    "Microsoft.ContainerInstance/containerGroups/delete": "container_groups.begin_delete",
    "Microsoft.ContainerInstance/containerGroups/containers/logs/read": "containers.list_logs",
    "Microsoft.Resources/deployments/read": "deployments.list_by_resource_group",
    "Microsoft.Resources/deployments/delete": "deployments.begin_delete",
}
FLOW_RUN_GROUP = re.compile(rf"^[a-zA-Z0-9-]*-(?P<run>{GUID_PATTERN})$")
FLOW_RUN_DEPLOYMENT = re.compile(rf"^prefect-[a-zA-Z0-9-]*-(?P<run>{GUID_PATTERN})$")
RUN_ID_VARIABLE = "PREFECT__FLOW_RUN_ID"
# Prefect states after which nothing runs in the group any more.
OVER = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
# States in which a run whose container ended has lost its engine: only its worker (or the sweep)
# can still end it. Scheduled, Paused and Cancelling runs are left to Prefect and the worker (a
# suspended run's container exits while it is Paused; a Scheduled run gets a new group).
ACTIVE = frozenset({StateType.PENDING, StateType.RUNNING})
OOM_EXIT = 137  # SIGKILL: the kernel's OOM killer, or the container evicted
GONE = "container group gone"
SWEEP_LOGGER = "prefect_aci.sweep"
# ARM states after which a deployment is history (its deletion cannot disturb it).
SETTLED = frozenset({"Succeeded", "Failed", "Canceled"})
PREFECT_PAGE = 200  # the Prefect API's default page limit


def parse_duration(text: str) -> datetime.timedelta:
    """'90m', '12h', '7d', '1d12h', '0s' -> a timedelta; a UserError for anything else."""
    try:
        return duration(text)
    except ValueError:
        raise UserError(f"--older-than must be {DURATION_RULE}; got {text!r}") from None


def describe(age: datetime.timedelta) -> str:
    """3d, 1d 12h, 2h, 2h 5m, 45m: the two largest units, as --older-than takes them."""
    minutes = int(age.total_seconds()) // 60
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return " ".join(parts[:2]) or "0m"


DELETE, KEEP, SKIP = "delete", "keep", "skip"  # SKIP: not a flow run's, never considered
# CRASH: the flow run is marked Crashed (its group's last log lines kept first), then its group,
# if any, is deleted.
CRASH = "crash"
GROUP, FLOW_RUN, DEPLOYMENT = "container group", "flow run", "deployment"


@dataclass(frozen=True)
class Verdict:
    kind: str  # GROUP, FLOW_RUN or DEPLOYMENT
    name: str
    action: str  # DELETE, KEEP, SKIP or CRASH
    reason: str
    run_id: uuid.UUID | None = None  # CRASH: the run to end
    crash: str | None = None  # CRASH: the Crashed state's message
    container: str | None = None  # CRASH of a group: the container whose last lines to keep


@dataclass(frozen=True)
class Ending:
    """How a flow run's container group ended, as ACI reports it."""

    message: str  # what the run's Crashed state says
    at: datetime.datetime | None  # when, for the grace window (None: not reported)
    container: str | None  # the container whose logs to keep


@dataclass(frozen=True)
class FlowRunGroup:
    name: str
    run_id: uuid.UUID
    ending: Ending | None = None  # None: its container waits or runs


@dataclass(frozen=True)
class FlowRunDeployment:
    name: str
    state: str | None
    timestamp: datetime.datetime | None
    run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Run:
    """A flow run as the Prefect API reports it."""

    state: StateType | None
    since: datetime.datetime | None = None  # when it entered that state
    name: str = ""


def exit_message(code: int | None) -> str:
    """The Crashed state's message for a container that exited with ``code`` while its flow
    run never reported a final state."""
    if code is None:
        return "container terminated without an exit code"
    if code == 0:
        # Prefect's engine reports the final state before its process exits: a clean exit with
        # the run still Pending or Running means that report never reached the API.
        return (
            "container exited with code 0 but the flow run never reported a final state "
            "(its report was lost)"
        )
    if code == OOM_EXIT:
        return f"killed: out of memory or evicted (exit {OOM_EXIT})"
    return f"container exited with code {code}"


def ending_of(group) -> Ending | None:
    """How a container group (azure-mgmt-containerinstance's ContainerGroup, as `get` returns it,
    instance view included) ended, or None while it may still run. The flow run's container is
    the first, as prefect-azure's worker reads it (AzureContainerWorker._get_container)."""
    containers = group.containers or []
    container = containers[0] if containers else None
    name = container.name if container else None
    view = container.instance_view if container else None
    current = view.current_state if view else None
    finished = current.finish_time if current else None
    if group.instance_view is not None and group.instance_view.state == "Stopped":
        return Ending("container group stopped", finished, name)
    if current is not None and current.state == "Terminated":
        policy = group.restart_policy or "Never"
        if policy == "Always" or (policy == "OnFailure" and current.exit_code != 0):
            return None  # ACI starts it again
        return Ending(exit_message(current.exit_code), finished, name)
    if group.provisioning_state == "Failed":
        return Ending("container group failed to provision", None, None)
    return None


def _age(now: datetime.datetime, then: datetime.datetime | None) -> datetime.timedelta | None:
    if then is None:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    return now - then


def _label(run: Run) -> str:
    return run.state.value.title() if run.state else "without a state"


def judge_groups(
    groups: Iterable[FlowRunGroup],
    runs: dict[uuid.UUID, Run],
    now: datetime.datetime | None = None,
    grace: datetime.timedelta = datetime.timedelta(0),
) -> list[Verdict]:
    """Delete a flow run's group when the run is over or unknown; end the run (Crashed) and then
    delete its group when the group ended while the run is still Pending or Running, once the
    grace window has passed; keep it while the run may run."""
    now = now or datetime.datetime.now(datetime.UTC)
    verdicts = []
    for group in groups:
        run = runs.get(group.run_id)
        if run is None:
            verdicts.append(Verdict(GROUP, group.name, DELETE, "flow run unknown to Prefect"))
            continue
        label = f"flow run {_label(run)}"
        ending = group.ending
        if run.state in OVER:
            verdicts.append(Verdict(GROUP, group.name, DELETE, label))
        elif run.state in ACTIVE and ending is not None:
            age = _age(now, ending.at or run.since)
            if age is not None and age < grace:
                ago = describe_seconds(age)
                reason = f"{label}, {ending.message} {ago} ago: within the grace window"
                verdicts.append(Verdict(GROUP, group.name, KEEP, reason))
            else:
                verdicts.append(
                    Verdict(
                        GROUP,
                        group.name,
                        CRASH,
                        f"{label}: {ending.message}",
                        group.run_id,
                        ending.message,
                        ending.container,
                    )
                )
        else:
            verdicts.append(Verdict(GROUP, group.name, KEEP, label))
    return verdicts


def judge_runs_without_group(
    runs: dict[uuid.UUID, Run],
    grouped: set[uuid.UUID],
    deployments: Iterable[FlowRunDeployment],
    now: datetime.datetime,
    grace: datetime.timedelta,
) -> list[Verdict]:
    """The pool's Pending and Running runs that have no container group: Crashed ("container
    group gone") once they have been in that state longer than the grace window, unless their
    flow-run ARM deployment is still deploying the group."""
    deploying = {d.run_id for d in deployments if d.run_id and d.state not in SETTLED}
    verdicts = []
    for run_id, run in sorted(runs.items(), key=lambda item: str(item[0])):
        if run_id in grouped or run.state not in ACTIVE:
            continue
        label = f"{run.name or 'flow run'} {_label(run)}, no container group"
        if run_id in deploying:
            verdicts.append(Verdict(FLOW_RUN, str(run_id), KEEP, f"{label}: still being deployed"))
            continue
        age = _age(now, run.since)
        if age is not None and age < grace:
            reason = f"{label}, {describe_seconds(age)} in that state: within the grace window"
            verdicts.append(Verdict(FLOW_RUN, str(run_id), KEEP, reason))
            continue
        verdicts.append(Verdict(FLOW_RUN, str(run_id), CRASH, f"{label}: {GONE}", run_id, GONE))
    return verdicts


def describe_seconds(age: datetime.timedelta) -> str:
    return f"{max(int(age.total_seconds()), 0)}s"


def judge_deployments(
    deployments: Iterable[FlowRunDeployment],
    now: datetime.datetime,
    older_than: datetime.timedelta,
) -> list[Verdict]:
    """Delete settled flow-run deployments at least ``older_than`` old."""
    verdicts = []
    for deployment in deployments:
        if deployment.state not in SETTLED:
            action, reason = KEEP, f"still {deployment.state}"
        elif deployment.timestamp is None:
            action, reason = KEEP, "no timestamp"
        else:
            age = now - deployment.timestamp
            action = DELETE if age >= older_than else KEEP
            reason = f"{describe(age)} old"
            if action == KEEP:
                reason += f", under {describe(older_than)}"
        verdicts.append(Verdict(DEPLOYMENT, deployment.name, action, reason))
    return verdicts


@dataclass
class Sweep:
    infra: Infra
    settings: SweepSettings

    @property
    def group(self) -> str:
        return self.settings.azure_resource_group

    def plan(self, older_than: datetime.timedelta, now: datetime.datetime) -> list[Verdict]:
        """Everything read, nothing changed: a verdict for each flow run's group and deployment,
        for each Pending or Running run of the pool whose group is gone, and a `skipped` one for
        what only looks like a flow run's. Groups are read before flow runs, so that a run whose
        engine reported its end before its group went is seen ended."""
        groups, skipped, named = self._flow_run_groups()
        deployments, skipped_deployments = self._flow_run_deployments()
        grace = datetime.timedelta(seconds=self.settings.sweep_grace_seconds)
        with self._prefect() as client:
            self._check_workspace(client)
            runs = self._runs(client, [g.run_id for g in groups])
            active = self._active_runs(client)
        return [
            *judge_groups(groups, runs, now, grace),
            *judge_runs_without_group(active, named, deployments, now, grace),
            *skipped,
            *judge_deployments(deployments, now, older_than),
            *skipped_deployments,
        ]

    def _flow_run_groups(self) -> tuple[list[FlowRunGroup], list[Verdict], set[uuid.UUID]]:
        """The flow runs' groups (each read for its containers' state), the look-alikes, and the
        run id of every group named as a flow run's."""
        worker = worker_group_name(self.settings.prefix)
        listed = arm_call(
            lambda: [
                g.name
                for g in self.infra.containers.container_groups.list_by_resource_group(self.group)
            ]
        )
        groups, skipped, named = [], [], set()
        for name in sorted(listed):
            match = FLOW_RUN_GROUP.match(name)
            if name == worker or match is None:
                why = "the worker" if name == worker else "not a flow run's"
                skipped.append(Verdict(GROUP, name, SKIP, why))
                continue
            run_id = uuid.UUID(match["run"])
            named.add(run_id)
            found = self._read_group(name)
            if found is None:
                continue  # gone since the listing (the worker's own cleanup): nothing to do
            if _carries_run_id(found, run_id):
                groups.append(FlowRunGroup(name, run_id, ending_of(found)))
            else:
                skipped.append(Verdict(GROUP, name, SKIP, f"no {RUN_ID_VARIABLE} of that run"))
        return groups, skipped, named

    def _read_group(self, name: str):
        """The group with its instance view (a listing has none), or None when it is gone."""
        try:
            return arm_call(lambda: self.infra.containers.container_groups.get(self.group, name))
        except NotFound:
            return None

    def _flow_run_deployments(self) -> tuple[list[FlowRunDeployment], list[Verdict]]:
        listed = arm_call(
            lambda: list(self.infra.client.deployments.list_by_resource_group(self.group))
        )
        found, skipped = [], []
        for deployment in sorted(listed, key=lambda d: d.name):
            match = FLOW_RUN_DEPLOYMENT.match(deployment.name)
            if match:
                properties = deployment.properties
                found.append(
                    FlowRunDeployment(
                        deployment.name,
                        properties.provisioning_state if properties else None,
                        properties.timestamp if properties else None,
                        uuid.UUID(match["run"]),
                    )
                )
            elif deployment.name.startswith("prefect-"):
                skipped.append(Verdict(DEPLOYMENT, deployment.name, SKIP, "not a flow run's"))
        return found, skipped

    @contextlib.contextmanager
    def _prefect(self, consequence: str = "nothing was deleted"):
        """A client of the sweep's Prefect API; its HTTP failures become one line."""
        api = self.settings.prefect_api_url
        settings = self.settings
        updates = client_settings(api, settings.prefect_api_key, settings.prefect_api_auth_string)
        with (
            temporary_settings(updates=updates),
            prefect_api_errors(consequence),
            get_client(sync_client=True) as client,
        ):
            yield client

    def _runs(self, client, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, Run]:
        """Each flow run the Prefect API knows; unknown ones are left out."""
        runs: dict[uuid.UUID, Run] = {}
        for start in range(0, len(run_ids), PREFECT_PAGE):
            chunk = run_ids[start : start + PREFECT_PAGE]
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            )
            runs.update({run.id: _run(run) for run in found})
        return runs

    def _active_runs(self, client) -> dict[uuid.UUID, Run]:
        """The pool's Pending and Running flow runs: each should have a group here."""
        runs: dict[uuid.UUID, Run] = {}
        pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[self.settings.work_pool_name]))
        states = FlowRunFilterState(type=FlowRunFilterStateType(any_=sorted(ACTIVE)))
        while True:
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=states),
                work_pool_filter=pool,
                limit=PREFECT_PAGE,
                offset=len(runs),
            )
            runs.update({run.id: _run(run) for run in found})
            if len(found) < PREFECT_PAGE:
                return runs

    def _check_workspace(self, client) -> None:
        """Pointed at another workspace, every run would look unknown and no run active."""
        pool = self.settings.work_pool_name
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            raise UserError(
                f"the Prefect API at {self.settings.prefect_api_url} has no work pool "
                f"{pool}, so every flow run would look unknown to it; point "
                "PREFECT_API_URL at the workspace the worker serves (and set "
                "PREFECT_ACI_WORK_POOL_NAME); nothing was deleted"
            ) from None

    def carry_out(
        self, verdicts: list[Verdict], dry_run: bool, echo: Callable[[str], None]
    ) -> list[Verdict]:
        """Do what the verdicts say, printing a line each; the verdicts that failed."""
        failed = []
        crashing = any(v.action == CRASH for v in verdicts) and not dry_run
        with self._prefect("the rest was left") if crashing else contextlib.nullcontext() as client:
            for verdict in verdicts:
                outcome = {
                    KEEP: "kept",
                    SKIP: "skipped",
                    DELETE: "would delete",
                    CRASH: "would crash",
                }[verdict.action]
                detail = verdict.reason
                if not dry_run and verdict.action in (DELETE, CRASH):
                    outcome, detail = self._carry_out_one(verdict, client)
                    if outcome == "failed":
                        failed.append(verdict)
                echo(f"{outcome:<13} {verdict.kind:<16} {verdict.name}  ({detail})")
        return failed

    def _carry_out_one(self, verdict: Verdict, client) -> tuple[str, str]:
        """(outcome, detail) of one verdict carried out."""
        detail = verdict.reason
        outcome = "deleted"
        if verdict.action == CRASH:
            try:
                outcome, detail = self._crash(verdict, client)
            except UserError as exc:
                kept = "; its group was kept" if verdict.kind == GROUP else ""
                return "failed", f"{verdict.reason}; {exc}{kept}"
            if verdict.kind == FLOW_RUN:
                return outcome, detail
        error = self._delete(verdict)
        if error:
            return "failed", f"{detail}; {error}"
        return outcome, detail

    def _crash(self, verdict: Verdict, client) -> tuple[str, str]:
        """Keep the container's last log lines in the run's logs, then propose Crashed.

        Proposed, not forced: Prefect's orchestration refuses Crashed for a run already in a
        final state (HandleFlowTerminalStateTransitions), so an engine that reported meanwhile
        keeps its state."""
        assert verdict.run_id is not None and verdict.crash is not None
        kept = ""
        if verdict.kind == GROUP and verdict.container:
            lines = self._last_lines(verdict.name, verdict.container)
            if isinstance(lines, str):
                kept = f"; its logs could not be read ({lines})"
            elif lines:
                with prefect_api_errors():
                    client.create_logs([self._log(verdict, lines)])
                kept = f"; its last {len(lines)} log line(s) kept in the run's logs"
            else:
                kept = "; its container logged nothing"
        message = f"{verdict.crash} (found by prefect-aci azure sweep)"
        with prefect_api_errors():
            result = client.set_flow_run_state(verdict.run_id, Crashed(message=message))
        if result.status == SetStateStatus.ACCEPT:
            return "crashed", f"{verdict.reason}{kept}"
        if result.state is not None and result.state.is_final():
            ended = result.state.type.value.title()
            return "left", f"{verdict.reason}; the run reported {ended} meanwhile, kept{kept}"
        reason = getattr(result.details, "reason", None) or "no reason given"
        raise UserError(f"the Prefect API did not accept Crashed ({result.status.value}: {reason})")

    def _last_lines(self, name: str, container: str) -> list[str] | str:
        """The container's last log lines (ACI keeps a tail of a stopped group's logs), or why
        they could not be read."""
        tail = self.settings.sweep_log_lines
        containers = self.infra.containers.containers
        try:
            logs = arm_call(lambda: containers.list_logs(self.group, name, container, tail=tail))
        except UserError as exc:
            return str(exc)
        lines = (logs.content or "").splitlines()
        return lines[-tail:]

    @staticmethod
    def _log(verdict: Verdict, lines: list[str]) -> LogCreate:
        header = (
            f"Last {len(lines)} log line(s) of container {verdict.container!r} of container "
            f"group {verdict.name} ({verdict.crash}), kept by prefect-aci azure sweep before it "
            "deleted the group:"
        )
        return LogCreate(
            name=SWEEP_LOGGER,
            level=logging.ERROR,
            message="\n".join([header, *lines]),
            timestamp=datetime.datetime.now(datetime.UTC),
            flow_run_id=verdict.run_id,
        )

    def _delete(self, verdict: Verdict) -> str | None:
        """Delete one resource; the reason it failed, or None."""
        containers, deployments = self.infra.containers, self.infra.client.deployments
        try:
            if verdict.kind == GROUP:
                arm_call(
                    lambda: containers.container_groups.begin_delete(
                        self.group, verdict.name
                    ).result()
                )
            else:
                # ARM accepts the deletion (202) and finishes it on its own; its poll address is
                # subscription-level, outside what a role on the resource group can grant.
                arm_call(lambda: deployments.begin_delete(self.group, verdict.name, polling=False))
        except NotFound:
            return None  # gone already: what was asked for
        except UserError as exc:
            return str(exc)
        return None


def _run(run) -> Run:
    state = run.state
    return Run(run.state_type, state.timestamp if state else None, run.name or "")


def _carries_run_id(group, run_id: uuid.UUID) -> bool:
    """Whether a container of the group has PREFECT__FLOW_RUN_ID of that run."""
    return any(
        variable.name == RUN_ID_VARIABLE and _same_id(variable.value, run_id)
        for container in group.containers or []
        for variable in container.environment_variables or []
    )


def _same_id(value: str | None, run_id: uuid.UUID) -> bool:
    try:
        return value is not None and uuid.UUID(value) == run_id
    except ValueError:
        return False


def summary(verdicts: list[Verdict], dry_run: bool) -> str:
    changing = [v for v in verdicts if v.action in (DELETE, CRASH)]
    groups = sum(v.kind == GROUP for v in changing)
    deployments = sum(v.kind == DEPLOYMENT for v in changing)
    crashed = sum(v.action == CRASH for v in verdicts)
    counts = f"{groups} container group(s) and {deployments} deployment(s)"
    kept = sum(v.action == KEEP for v in verdicts)
    if dry_run:
        return (
            f"Dry run: would mark {crashed} flow run(s) Crashed, delete {counts}, keep {kept}; "
            "nothing was deleted."
        )
    return f"Marked {crashed} flow run(s) Crashed. Deleted {counts}; kept {kept}."


def sweep(
    settings: SweepSettings,
    credential: TokenCredential,
    older_than: datetime.timedelta,
    dry_run: bool,
    echo: Callable[[str], None],
    transport: HttpTransport | None = None,
    now: datetime.datetime | None = None,
) -> list[Verdict]:
    """Read the resource group and the Prefect API, then (unless ``dry_run``) end the runs and
    delete what the verdicts say, printing a line each; a UserError when something failed."""
    job = Sweep(Infra.connect(settings, credential, transport), settings)
    verdicts = job.plan(older_than, now or datetime.datetime.now(datetime.UTC))
    failed = job.carry_out(verdicts, dry_run, echo)
    crashes = sum(v.action == CRASH for v in failed)
    problems = []
    if len(failed) > crashes:
        problems.append(
            f"{len(failed) - crashes} deletion(s) failed (lines above); the identity running the "
            "sweep needs the worker role on the resource group (docs/azure.md)"
        )
    if crashes:
        problems.append(
            f"{crashes} flow run(s) could not be ended (lines above); their groups were kept for "
            "the next sweep"
        )
    if problems:
        raise UserError("; ".join(problems))
    return verdicts
