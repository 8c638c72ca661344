"""`prefect-aci azure sweep` as a reconciler: flow runs whose container group ended or went while
their engine never reported get their true final state. Local ACI runs in the test process (its
HTTPS app, Azure RBAC over the deployer's real role assignment, the unchanged
azure-mgmt-containerinstance SDK); its groups run nothing, each container's instance view (state,
exit code, finish time) and logs are what the test says, as ACI would report them. The flow runs
live on a real Prefect server in a subprocess, in a work pool of their own."""

import contextlib
import datetime
import time
import uuid
from dataclasses import dataclass, field

import pytest
from azure.identity import ManagedIdentityCredential
from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
    ContainerPropertiesInstanceView,
    ContainerState,
    ResourceRequests,
    ResourceRequirements,
)
from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Pending, Running

from arm.deploy import Infra
from arm.settings import SweepSettings
from arm.sweep import (
    CRASH,
    DELETE,
    FLOW_RUN,
    GONE,
    KEEP,
    SWEEP_LOGGER,
    Ending,
    FlowRunDeployment,
    FlowRunGroup,
    Run,
    Sweep,
    ending_of,
    exit_message,
    judge_groups,
    judge_runs_without_group,
    sweep,
)
from prefect_aci.core.errors import UserError
from prefect_aci.core.settings import load
from prefect_aci.local_aci.groups import Group
from prefect_aci.local_aci.tls import make_tls
from tests.arm.test_sweep import TARGET, UNSET_AZURE, group_name
from tests.conftest import run_cli
from tests.local_aci.arm_helpers import FakeGroups
from tests.local_azure_helpers import Local, local_azure, start_local
from tests.stand_ins import AzureHostsProxy

DAY = datetime.timedelta(days=1)
NOW = datetime.datetime.now(datetime.UTC)
OOM = "killed: out of memory or evicted (exit 137)"


class EndedGroups(FakeGroups):
    """FakeGroups whose containers report the instance view and logs a test gives them."""

    def __init__(self) -> None:
        super().__init__([])
        self.views: dict[str, dict] = {}  # group name -> its container's instance view
        self.lines: dict[str, list[str]] = {}  # group name -> its container's log lines
        self.tails: list[int | None] = []  # the tail of every logs request

    def end(self, name: str, exit_code: int, ago: datetime.timedelta, lines: list[str]) -> None:
        finished = datetime.datetime.now(datetime.UTC) - ago
        self.views[name] = {
            "restartCount": 0,
            "currentState": {
                "state": "Terminated",
                "startTime": (finished - datetime.timedelta(minutes=5)).isoformat(),
                "finishTime": finished.isoformat(),
                "exitCode": exit_code,
                "detailStatus": "Completed" if exit_code == 0 else "Error",
            },
            "events": [],
        }
        self.lines[name] = lines

    def instance_view(self, group: Group) -> list[tuple[str, dict]]:
        running = {"restartCount": 0, "currentState": {"state": "Running", "detailStatus": ""}}
        containers = group.spec["properties"]["containers"]
        return [(c["name"], self.views.get(group.name, running)) for c in containers]

    def logs(self, group: Group, container: str, tail: int | None) -> str | None:
        self.tails.append(tail)
        lines = self.lines.get(group.name, [])
        return "".join(f"{line}\n" for line in (lines[-tail:] if tail else lines))


@dataclass
class Scene:
    """Local ACI, a pool of the tests' own on the server, and the runs made in it."""

    arm: Local
    groups: EndedGroups
    api: str
    pool: str
    flow_name: str
    deployment_id: uuid.UUID
    lines: list[str] = field(default_factory=list)

    def run(self, state) -> uuid.UUID:
        """A flow run of the pool's deployment, put in ``state`` as its engine would."""
        with self.client() as client:
            made = client.create_flow_run_from_deployment(self.deployment_id)
            client.set_flow_run_state(made.id, state, force=True)
        return made.id

    def group(self, run_id: uuid.UUID) -> str:
        """The run's container group, named and labelled as the worker makes it."""
        name = group_name(self.flow_name, run_id)
        self.arm.add_group(
            name, {"flow-run": {"PREFECT__FLOW_RUN_ID": str(run_id), "PREFECT_API_URL": "x"}}
        )
        return name

    def client(self):
        return _client(self.api)

    def state(self, run_id: uuid.UUID):
        with self.client() as client:
            return client.read_flow_run(run_id).state

    def sweep_logs(self, run_id: uuid.UUID) -> list[str]:
        with self.client() as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        return [log.message for log in logs if log.name == SWEEP_LOGGER]

    def settings(self, monkeypatch, **env: str) -> SweepSettings:
        values = {
            **TARGET,
            "PREFECT_API_URL": self.api,
            "PREFECT_ACI_WORK_POOL_NAME": self.pool,
            "PREFECT_ACI_SWEEP_GRACE_SECONDS": "60",
            **env,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return load(SweepSettings)

    def sweep(self, monkeypatch, dry_run: bool = False, **env: str):
        settings = self.settings(monkeypatch, **env)
        return sweep(
            settings, ManagedIdentityCredential(), DAY, dry_run, self.lines.append, self.transport
        )

    @property
    def transport(self):
        return self.arm.transport()

    def line(self, name: str) -> str:
        [found] = [line for line in self.lines if f" {name}  (" in line]
        return found


@contextlib.contextmanager
def _client(api: str):
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        yield client


def _scene(local: Local, groups: EndedGroups, api: str) -> Scene:
    """A pool of its own on the server with one deployment, whose runs the test makes."""
    pool = f"aci-{uuid.uuid4().hex[:8]}"
    flow_name = f"Reconcile test {uuid.uuid4().hex[:6]}"

    @flow(name=flow_name)
    def noop() -> None:
        pass

    with _client(api) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="azure-container-instance"))
        flow_id = client.create_flow(noop)
        deployment_id = client.create_deployment(flow_id, "aci", work_pool_name=pool)
    return Scene(local, groups, api, pool, flow_name, deployment_id)


@pytest.fixture
def scene(tmp_path, monkeypatch, prefect_api) -> Scene:
    groups = EndedGroups()
    local = start_local(tmp_path, local_azure(), groups=groups)
    for name, value in local.identity_env().items():
        monkeypatch.setenv(name, value)
    yield _scene(local, groups, prefect_api)
    local.close()


def test_the_command_reconciles_and_counts_what_it_did(tmp_path, prefect_api):
    """`prefect-aci azure sweep` in a subprocess, at management.azure.com over HTTPS (local ACI
    through a proxy that knows only that host): a dry run, then the sweep."""
    groups = EndedGroups()
    tls = make_tls(tmp_path / "tls", names=("management.azure.com",))
    local = start_local(tmp_path, local_azure(), tls=tls, groups=groups)
    proxy = AzureHostsProxy({"management.azure.com:443": ("127.0.0.1", local.server.port)})
    try:
        scene = _scene(local, groups, prefect_api)
        killed = scene.run(Running())
        name = scene.group(killed)
        groups.end(name, 137, datetime.timedelta(minutes=5), ["Killed"])
        gone = scene.run(Running())
        env = {
            **TARGET,
            **UNSET_AZURE,
            **local.identity_env(),
            **proxy.env(),
            **tls.env(),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_ACI_WORK_POOL_NAME": scene.pool,
            "PREFECT_ACI_SWEEP_GRACE_SECONDS": "0",
        }
        dry = run_cli("azure", "sweep", "--dry-run", env=env, timeout=180)
        assert dry.returncode == 0, dry.stderr
        assert "would mark 2 flow run(s) Crashed, delete 1 container group(s)" in dry.stdout
        assert scene.state(killed).type == StateType.RUNNING and name in local.group_names()
        done = run_cli("azure", "sweep", env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        assert "Marked 2 flow run(s) Crashed. Deleted 1 container group(s)" in done.stdout
        [line] = [x for x in done.stdout.splitlines() if f" {name}  (" in x]
        assert line.startswith("crashed") and OOM in line
        assert OOM in scene.state(killed).message
        assert GONE in scene.state(gone).message
        assert name not in local.group_names()
    finally:
        proxy.close()
        local.close()


def test_a_run_killed_with_137_is_crashed_with_its_last_log_lines_and_its_group_deleted(
    scene, monkeypatch
):
    run_id = scene.run(Running())
    name = scene.group(run_id)
    lines = [f"line {i}" for i in range(80)] + ["MemoryError: the last words"]
    scene.groups.end(name, 137, datetime.timedelta(minutes=5), lines)
    scene.sweep(monkeypatch, PREFECT_ACI_SWEEP_LOG_LINES="20")
    state = scene.state(run_id)
    assert state.type == StateType.CRASHED
    assert OOM in state.message
    [kept] = scene.sweep_logs(run_id)
    assert kept.splitlines()[1:] == lines[-20:]
    assert "container 'flow-run'" in kept.splitlines()[0]
    assert scene.groups.tails == [20]
    assert name not in scene.arm.group_names()
    assert scene.line(name).startswith("crashed") and "last 20 log line(s) kept" in scene.line(name)


def test_a_run_whose_container_exited_with_1_is_crashed_with_the_code(scene, monkeypatch):
    run_id = scene.run(Running())
    name = scene.group(run_id)
    scene.groups.end(name, 1, datetime.timedelta(minutes=2), ["Traceback", "ValueError: no"])
    scene.sweep(monkeypatch)
    state = scene.state(run_id)
    assert state.type == StateType.CRASHED
    assert "container exited with code 1" in state.message
    assert scene.sweep_logs(run_id)[0].splitlines()[1:] == ["Traceback", "ValueError: no"]
    assert name not in scene.arm.group_names()


def test_a_clean_exit_whose_report_was_lost_is_crashed_and_says_so(scene, monkeypatch):
    run_id = scene.run(Running())
    name = scene.group(run_id)
    scene.groups.end(name, 0, datetime.timedelta(minutes=2), ["done"])
    scene.sweep(monkeypatch)
    state = scene.state(run_id)
    assert state.type == StateType.CRASHED
    assert "exited with code 0 but the flow run never reported a final state" in state.message
    assert name not in scene.arm.group_names()


def test_a_running_run_whose_group_is_gone_is_crashed(scene, monkeypatch):
    run_id = scene.run(Running())
    scene.sweep(monkeypatch, PREFECT_ACI_SWEEP_GRACE_SECONDS="0")
    state = scene.state(run_id)
    assert state.type == StateType.CRASHED
    assert GONE in state.message
    assert scene.line(str(run_id)).startswith("crashed")
    assert scene.sweep_logs(run_id) == []


def test_a_run_the_engine_ended_keeps_its_state_and_loses_its_group(scene, monkeypatch):
    run_id = scene.run(Completed())
    name = scene.group(run_id)
    scene.groups.end(name, 0, datetime.timedelta(minutes=5), ["done"])
    scene.sweep(monkeypatch)
    assert scene.state(run_id).type == StateType.COMPLETED
    assert scene.sweep_logs(run_id) == []
    assert scene.groups.tails == []
    assert name not in scene.arm.group_names()
    assert scene.line(name).startswith("deleted")


def test_runs_within_the_grace_window_are_left_alone(scene, monkeypatch):
    """A group that ended seconds ago, and a Running run without a group that got there seconds
    ago: their engine may be about to report."""
    ended = scene.run(Running())
    name = scene.group(ended)
    scene.groups.end(name, 137, datetime.timedelta(seconds=5), ["bye"])
    groupless = scene.run(Running())
    scene.sweep(monkeypatch)
    assert scene.state(ended).type == StateType.RUNNING
    assert scene.state(groupless).type == StateType.RUNNING
    assert name in scene.arm.group_names()
    assert "within the grace window" in scene.line(name)
    assert "within the grace window" in scene.line(str(groupless))
    assert scene.groups.tails == []
    # Past the window, the next sweep ends both.
    time.sleep(1.5)
    scene.sweep(monkeypatch, PREFECT_ACI_SWEEP_GRACE_SECONDS="1")
    assert OOM in scene.state(ended).message
    assert GONE in scene.state(groupless).message


def test_a_pending_run_whose_group_is_still_deployed_is_left(scene, monkeypatch):
    run_id = scene.run(Pending())
    scene.arm.add_deployment(
        f"prefect-{group_name(scene.flow_name, run_id)}", NOW - DAY, state="Running"
    )
    scene.sweep(monkeypatch, PREFECT_ACI_SWEEP_GRACE_SECONDS="0")
    assert scene.state(run_id).type == StateType.PENDING
    assert "still being deployed" in scene.line(str(run_id))


def test_a_dry_run_changes_nothing(scene, monkeypatch):
    run_id = scene.run(Running())
    name = scene.group(run_id)
    scene.groups.end(name, 137, datetime.timedelta(minutes=5), ["bye"])
    gone = scene.run(Running())
    scene.sweep(monkeypatch, dry_run=True, PREFECT_ACI_SWEEP_GRACE_SECONDS="0")
    assert scene.state(run_id).type == StateType.RUNNING
    assert scene.state(gone).type == StateType.RUNNING
    assert scene.sweep_logs(run_id) == []
    assert name in scene.arm.group_names()
    assert scene.arm.of("DELETE", "") == []
    assert scene.line(name).startswith("would crash") and OOM in scene.line(name)
    assert scene.line(str(gone)).startswith("would crash")


def test_an_engine_that_reports_after_the_plan_keeps_its_state(scene, monkeypatch):
    """The sweep proposes Crashed, never forces it: Prefect refuses Crashed for a run already
    over, so a report that lands between the sweep's reading and its acting wins."""
    run_id = scene.run(Running())
    name = scene.group(run_id)
    scene.groups.end(name, 1, datetime.timedelta(minutes=5), ["late"])
    settings = scene.settings(monkeypatch)
    job = Sweep(Infra.connect(settings, ManagedIdentityCredential(), scene.transport), settings)
    verdicts = job.plan(DAY, datetime.datetime.now(datetime.UTC))
    assert [v.action for v in verdicts if v.name == name] == [CRASH]
    with scene.client() as client:
        client.set_flow_run_state(run_id, Completed())
    assert job.carry_out(verdicts, False, scene.lines.append) == []
    assert scene.state(run_id).type == StateType.COMPLETED
    assert scene.line(name).startswith("left") and "reported Completed meanwhile" in scene.line(
        name
    )
    assert name not in scene.arm.group_names()


def test_a_refused_state_change_keeps_the_group_for_the_next_sweep(scene, monkeypatch):
    """The Prefect API answers the writes with an error (a wrong path here): the run and its
    group stay as they were, and the verdict is reported failed."""
    run_id = scene.run(Running())
    name = scene.group(run_id)
    scene.groups.end(name, 1, datetime.timedelta(minutes=5), ["x"])
    settings = scene.settings(monkeypatch)
    job = Sweep(Infra.connect(settings, ManagedIdentityCredential(), scene.transport), settings)
    verdicts = job.plan(DAY, datetime.datetime.now(datetime.UTC))
    job.settings = settings.model_copy(update={"prefect_api_url": scene.api + "/nowhere"})
    assert [v.name for v in job.carry_out(verdicts, False, scene.lines.append)] == [name]
    assert scene.line(name).startswith("failed") and "its group was kept" in scene.line(name)
    assert scene.state(run_id).type == StateType.RUNNING
    assert name in scene.arm.group_names()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (137, OOM),
        (1, "container exited with code 1"),
        (143, "container exited with code 143"),
        (0, "exited with code 0 but the flow run never reported a final state"),
        (None, "container terminated without an exit code"),
    ],
)
def test_exit_messages(code, expected):
    assert expected in exit_message(code)


def _group(state: str = "Running", code: int | None = None, **group) -> ContainerGroup:
    """A container group as azure-mgmt-containerinstance reads it from ACI."""
    current = ContainerState()  # read-only fields: set as the SDK's deserializer does
    current.state, current.exit_code, current.finish_time = state, code, NOW
    container = Container(
        name="job",
        image="img",
        resources=ResourceRequirements(requests=ResourceRequests(memory_in_gb=1, cpu=1)),
    )
    container.instance_view = ContainerPropertiesInstanceView()
    container.instance_view.current_state = current
    return ContainerGroup(containers=[container], os_type="Linux", **group)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (_group(), None),
        (_group("Waiting"), None),
        (_group("Terminated", 137, restart_policy="Never"), OOM),
        (_group("Terminated", 3), "container exited with code 3"),
        (_group("Terminated", 3, restart_policy="OnFailure"), None),
        (_group("Terminated", 0, restart_policy="OnFailure"), "exited with code 0"),
        (_group("Terminated", 0, restart_policy="Always"), None),
    ],
)
def test_how_a_group_ended_is_read_from_its_first_containers_instance_view(group, expected):
    ending = ending_of(group)
    if expected is None:
        assert ending is None
    else:
        assert expected in ending.message
        assert ending.at == NOW and ending.container == "job"


def test_group_verdicts_follow_the_run_state_the_ending_and_the_grace_window():
    grace = datetime.timedelta(seconds=60)
    old = Ending("container exited with code 1", NOW - datetime.timedelta(minutes=5), "c")
    new = Ending("container exited with code 1", NOW - datetime.timedelta(seconds=5), "c")
    timeless = Ending("container group failed to provision", None, None)
    cases = {  # name -> (run, ending, expected action)
        "running-old": (Run(StateType.RUNNING), old, CRASH),
        "pending-old": (Run(StateType.PENDING), old, CRASH),
        "running-new": (Run(StateType.RUNNING), new, KEEP),
        "running-alive": (Run(StateType.RUNNING), None, KEEP),
        "completed": (Run(StateType.COMPLETED), old, DELETE),
        "paused": (Run(StateType.PAUSED), old, KEEP),
        "scheduled": (Run(StateType.SCHEDULED), old, KEEP),
        "cancelling": (Run(StateType.CANCELLING), old, KEEP),
        "timeless-fresh": (Run(StateType.PENDING, NOW), timeless, KEEP),
        "timeless-old": (Run(StateType.PENDING, NOW - DAY), timeless, CRASH),
    }
    ids = {name: uuid.uuid4() for name in cases}
    groups = [FlowRunGroup(name, ids[name], ending) for name, (_, ending, _) in cases.items()]
    runs = {ids[name]: run for name, (run, _, _) in cases.items()}
    verdicts = {v.name: v for v in judge_groups(groups, runs, NOW, grace)}
    for name, (_, ending, expected) in cases.items():
        assert verdicts[name].action == expected, name
        if expected == CRASH:
            assert verdicts[name].crash == ending.message
            assert verdicts[name].run_id == ids[name]


def test_runs_without_a_group_are_crashed_once_past_the_window_unless_still_deploying():
    grace = datetime.timedelta(seconds=60)
    ids = [uuid.uuid4() for _ in range(5)]
    runs = {
        ids[0]: Run(StateType.RUNNING, NOW - DAY),
        ids[1]: Run(StateType.RUNNING, NOW - datetime.timedelta(seconds=10)),
        ids[2]: Run(StateType.PENDING, NOW - DAY),
        ids[3]: Run(StateType.RUNNING, NOW - DAY),  # has a group
        ids[4]: Run(StateType.PENDING, NOW - DAY),  # its deployment still runs
    }
    deployments = [
        FlowRunDeployment("prefect-a", "Running", NOW, ids[4]),
        FlowRunDeployment("prefect-b", "Succeeded", NOW, ids[2]),
    ]
    verdicts = judge_runs_without_group(runs, {ids[3]}, deployments, NOW, grace)
    assert {v.name: v.action for v in verdicts} == {
        str(ids[0]): CRASH,
        str(ids[1]): KEEP,
        str(ids[2]): CRASH,
        str(ids[4]): KEEP,
    }
    assert all(v.kind == FLOW_RUN for v in verdicts)
    assert {v.crash for v in verdicts if v.action == CRASH} == {GONE}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PREFECT_ACI_SWEEP_GRACE_SECONDS", "soon", "PREFECT_ACI_SWEEP_GRACE_SECONDS must be"),
        ("PREFECT_ACI_SWEEP_GRACE_SECONDS", "-1", "from 0 to 86400"),
        ("PREFECT_ACI_SWEEP_LOG_LINES", "0", "PREFECT_ACI_SWEEP_LOG_LINES must be"),
    ],
)
def test_bad_sweep_settings_are_one_clear_error(monkeypatch, name, value, expected):
    for key, given in {**TARGET, "PREFECT_API_URL": "http://127.0.0.1:9/api", name: value}.items():
        monkeypatch.setenv(key, given)
    with pytest.raises(UserError, match=expected):
        load(SweepSettings)
