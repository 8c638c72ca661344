"""`prefect-aci azure sweep`: what prefect-azure's ACI worker leaves behind in the resource group.

The worker deletes a flow run's container group in a `finally` with a 30 s timeout: when the
worker dies or the delete times out, the group outlives its run and keeps billing. Every flow run
is also an ARM deployment (`prefect-<group name>`) the worker never deletes: a resource group keeps
at most 800, and each keeps the template the worker submitted, PREFECT_API_KEY in it.

The sweep reads everything first (container groups, deployments, the flow runs' states in the
Prefect API) and only then deletes: container groups whose flow run is finished (Completed,
Failed), Crashed, Cancelled, or unknown to the Prefect API; and flow-run deployments older than a
given age. It touches nothing else. A group is a flow run's only when its name is
`<slugified flow name>-<flow run id>` (prefect_azure/workers/container_instance.py) AND one of its
containers carries PREFECT__FLOW_RUN_ID with that id (Prefect's worker sets it); the worker's own
group `<prefix>-worker` is never a candidate. Before deleting a group for an unknown run, the sweep
checks that the Prefect API serves the worker's work pool: pointed at another workspace, every run
would look unknown.
"""

import contextlib
import datetime
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import temporary_settings

from arm.deploy import Infra, NotFound, arm_call, worker_group_name
from arm.settings import SweepSettings
from prefect_aci.core.errors import UserError
from prefect_aci.core.prefect_api import client_settings, prefect_api_errors
from prefect_aci.core.settings import GUID_PATTERN

# What the sweep calls, as Azure RBAC actions: the worker role (template and
# arm/prefect-aci-role.json) holds all of them, so it runs with the worker identity's rights.
SWEEP_ACTIONS = {
    "Microsoft.ContainerInstance/containerGroups/read": "container_groups.list_by_resource_group, "
    "container_groups.get",
    "Microsoft.ContainerInstance/containerGroups/delete": "container_groups.begin_delete",
    "Microsoft.Resources/deployments/read": "deployments.list_by_resource_group",
    "Microsoft.Resources/deployments/delete": "deployments.begin_delete",
}
FLOW_RUN_GROUP = re.compile(rf"^[a-zA-Z0-9-]*-(?P<run>{GUID_PATTERN})$")
FLOW_RUN_DEPLOYMENT = re.compile(rf"^prefect-[a-zA-Z0-9-]*-(?P<run>{GUID_PATTERN})$")
RUN_ID_VARIABLE = "PREFECT__FLOW_RUN_ID"
# Prefect states after which nothing runs in the group any more.
OVER = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
# ARM states after which a deployment is history (its deletion cannot disturb it).
SETTLED = frozenset({"Succeeded", "Failed", "Canceled"})
PREFECT_PAGE = 200  # the Prefect API's default page limit
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION = re.compile(r"^(?:\d+[smhdw])+$")


def parse_duration(text: str) -> datetime.timedelta:
    """'90m', '12h', '7d', '1d12h', '0s' -> a timedelta; a UserError for anything else."""
    if not DURATION.match(text.strip()):
        raise UserError(
            f"--older-than must be a duration like 30m, 12h, 7d or 1d12h (s, m, h, d, w); "
            f"got {text!r}"
        )
    parts = re.findall(r"(\d+)([smhdw])", text)
    return datetime.timedelta(**{UNITS[unit]: int(n) for n, unit in parts})


def describe(age: datetime.timedelta) -> str:
    """3d, 1d 12h, 2h, 2h 5m, 45m: the two largest units, as --older-than takes them."""
    minutes = int(age.total_seconds()) // 60
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return " ".join(parts[:2]) or "0m"


DELETE, KEEP, SKIP = "delete", "keep", "skip"  # SKIP: not a flow run's, never considered


@dataclass(frozen=True)
class Verdict:
    kind: str  # "container group" or "deployment"
    name: str
    action: str  # DELETE, KEEP or SKIP
    reason: str


@dataclass(frozen=True)
class FlowRunGroup:
    name: str
    run_id: uuid.UUID


@dataclass(frozen=True)
class FlowRunDeployment:
    name: str
    state: str | None
    timestamp: datetime.datetime | None


def judge_groups(
    groups: Iterable[FlowRunGroup], states: dict[uuid.UUID, StateType | None]
) -> list[Verdict]:
    """Delete a flow run's group when the run is over or unknown; keep it while it may run."""
    verdicts = []
    for group in groups:
        if group.run_id not in states:
            verdicts.append(
                Verdict("container group", group.name, DELETE, "flow run unknown to Prefect")
            )
            continue
        state = states[group.run_id]
        label = state.value.title() if state else "without a state"
        action = DELETE if state in OVER else KEEP
        verdicts.append(Verdict("container group", group.name, action, f"flow run {label}"))
    return verdicts


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
        verdicts.append(Verdict("deployment", deployment.name, action, reason))
    return verdicts


@dataclass
class Sweep:
    infra: Infra
    settings: SweepSettings

    @property
    def group(self) -> str:
        return self.settings.azure_resource_group

    def plan(self, older_than: datetime.timedelta, now: datetime.datetime) -> list[Verdict]:
        """Everything read, nothing deleted: a verdict for each flow run's group and deployment,
        and a `skipped` one for what only looks like one."""
        groups, skipped = self._flow_run_groups()
        deployments, skipped_deployments = self._flow_run_deployments()
        states = self._states([g.run_id for g in groups]) if groups else {}
        if any(g.run_id not in states for g in groups):
            self._check_workspace()
        return [
            *judge_groups(groups, states),
            *skipped,
            *judge_deployments(deployments, now, older_than),
            *skipped_deployments,
        ]

    def _flow_run_groups(self) -> tuple[list[FlowRunGroup], list[Verdict]]:
        worker = worker_group_name(self.settings.prefix)
        listed = arm_call(
            lambda: [
                g.name
                for g in self.infra.containers.container_groups.list_by_resource_group(self.group)
            ]
        )
        groups, skipped = [], []
        for name in sorted(listed):
            match = FLOW_RUN_GROUP.match(name)
            if name == worker or match is None:
                why = "the worker" if name == worker else "not a flow run's"
                skipped.append(Verdict("container group", name, SKIP, why))
                continue
            run_id = uuid.UUID(match["run"])
            carries = self._carries_run_id(name, run_id)
            if carries is None:
                continue  # gone since the listing (the worker's own cleanup): nothing to do
            if carries:
                groups.append(FlowRunGroup(name, run_id))
            else:
                skipped.append(
                    Verdict("container group", name, SKIP, f"no {RUN_ID_VARIABLE} of that run")
                )
        return groups, skipped

    def _carries_run_id(self, name: str, run_id: uuid.UUID) -> bool | None:
        """Whether a container of the group has PREFECT__FLOW_RUN_ID of that run; None when the
        group is gone."""
        try:
            group = arm_call(lambda: self.infra.containers.container_groups.get(self.group, name))
        except NotFound:
            return None
        return any(
            variable.name == RUN_ID_VARIABLE and _same_id(variable.value, run_id)
            for container in group.containers
            for variable in container.environment_variables or []
        )

    def _flow_run_deployments(self) -> tuple[list[FlowRunDeployment], list[Verdict]]:
        listed = arm_call(
            lambda: list(self.infra.client.deployments.list_by_resource_group(self.group))
        )
        found, skipped = [], []
        for deployment in sorted(listed, key=lambda d: d.name):
            if FLOW_RUN_DEPLOYMENT.match(deployment.name):
                properties = deployment.properties
                found.append(
                    FlowRunDeployment(
                        deployment.name,
                        properties.provisioning_state if properties else None,
                        properties.timestamp if properties else None,
                    )
                )
            elif deployment.name.startswith("prefect-"):
                skipped.append(Verdict("deployment", deployment.name, SKIP, "not a flow run's"))
        return found, skipped

    @contextlib.contextmanager
    def _prefect(self):
        """A client of the sweep's Prefect API; its HTTP failures become one line."""
        api = self.settings.prefect_api_url
        settings = self.settings
        updates = client_settings(api, settings.prefect_api_key, settings.prefect_api_auth_string)
        with (
            temporary_settings(updates=updates),
            prefect_api_errors("nothing was deleted"),
            get_client(sync_client=True) as client,
        ):
            yield client

    def _states(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, StateType | None]:
        """The state of each flow run the Prefect API knows; unknown ones are left out."""
        states: dict[uuid.UUID, StateType | None] = {}
        with self._prefect() as client:
            for start in range(0, len(run_ids), PREFECT_PAGE):
                chunk = run_ids[start : start + PREFECT_PAGE]
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                    limit=len(chunk),
                )
                states.update({run.id: run.state_type for run in runs})
        return states

    def _check_workspace(self) -> None:
        pool = self.settings.work_pool_name
        with self._prefect() as client:
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
        """Delete what the verdicts say, printing a line each; the verdicts that failed."""
        failed = []
        for verdict in verdicts:
            outcome = {KEEP: "kept", SKIP: "skipped", DELETE: "would delete"}[verdict.action]
            error = None
            if verdict.action == DELETE and not dry_run:
                error = self._delete(verdict)
                outcome = "failed" if error else "deleted"
                if error:
                    failed.append(verdict)
            detail = f"{verdict.reason}; {error}" if error else verdict.reason
            echo(f"{outcome:<13} {verdict.kind:<16} {verdict.name}  ({detail})")
        return failed

    def _delete(self, verdict: Verdict) -> str | None:
        """Delete one resource; the reason it failed, or None."""
        containers, deployments = self.infra.containers, self.infra.client.deployments
        try:
            if verdict.kind == "container group":
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


def _same_id(value: str | None, run_id: uuid.UUID) -> bool:
    try:
        return value is not None and uuid.UUID(value) == run_id
    except ValueError:
        return False


def summary(verdicts: list[Verdict], dry_run: bool) -> str:
    deleting = [v for v in verdicts if v.action == DELETE]
    groups = sum(v.kind == "container group" for v in deleting)
    counts = f"{groups} container group(s) and {len(deleting) - groups} deployment(s)"
    kept = sum(v.action == KEEP for v in verdicts)
    if dry_run:
        return f"Dry run: would delete {counts}, keep {kept}; nothing was deleted."
    return f"Deleted {counts}; kept {kept}."


def sweep(
    settings: SweepSettings,
    credential: TokenCredential,
    older_than: datetime.timedelta,
    dry_run: bool,
    echo: Callable[[str], None],
    transport: HttpTransport | None = None,
) -> list[Verdict]:
    """Read the resource group and the Prefect API, then delete (unless ``dry_run``) what the
    verdicts say, printing a line each; a UserError when a deletion failed."""
    job = Sweep(Infra.connect(settings, credential, transport), settings)
    verdicts = job.plan(older_than, datetime.datetime.now(datetime.UTC))
    failed = job.carry_out(verdicts, dry_run, echo)
    if failed:
        raise UserError(
            f"{len(failed)} deletion(s) failed (lines above); the identity running the sweep "
            "needs the worker role on the resource group (docs/azure.md)"
        )
    return verdicts
