"""`prefect-aci azure sweep`: the command as users run it, against local ACI at
management.azure.com (in the test process, HTTPS through a proxy that knows only that host, so
azure-core and both management SDKs run unchanged; the deployer signed in through local ACI's
identity endpoint, holding a real role on the resource group) and a real Prefect server holding
flow runs in every state; the verdicts and the duration option on their own; bad input stopped
before anything is sent."""

import datetime
import uuid
from dataclasses import dataclass

import pytest
from azure.identity import ManagedIdentityCredential
from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import (
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
)
from slugify import slugify

from arm.settings import SweepSettings
from arm.sweep import (
    DELETE,
    KEEP,
    FlowRunDeployment,
    FlowRunGroup,
    Run,
    judge_deployments,
    judge_groups,
    parse_duration,
    sweep,
)
from prefect_aci.core.errors import UserError
from prefect_aci.core.settings import load
from prefect_aci.local_aci.authorization import READER
from prefect_aci.local_aci.tls import make_tls
from tests.acr_stand_in import AzureStandIn
from tests.conftest import run_cli
from tests.local_azure_helpers import Local, local_azure, start_local
from tests.stand_ins import AzureHostsProxy

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
API_KEY = "pnu_sweep_never_print_this"
TARGET = {
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "AZURE_RESOURCE_GROUP": "prefect-aci-rg",
    "PREFECT_ACI_PREFIX": "prefect",
}
UNSET_AZURE = dict.fromkeys(
    ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE")
)
NOW = datetime.datetime.now(datetime.UTC)
DAYS_AGO = NOW - datetime.timedelta(days=3)
HOURS_AGO = NOW - datetime.timedelta(hours=2)
DAY = datetime.timedelta(days=1)


def group_name(flow_name: str, run_id: uuid.UUID) -> str:
    """As prefect-azure 0.4.13's worker names a flow run's container group
    (prefect_azure/workers/container_instance.py, AzureContainerWorker.run)."""
    slug = slugify(flow_name, max_length=55 - len(str(run_id)), regex_pattern=r"[^a-zA-Z0-9-]+")
    return f"{slug}-{run_id}"


def add_flow_run_group(local: Local, name: str, run_id: uuid.UUID) -> None:
    """A flow run's group as the worker creates it: Prefect's worker sets PREFECT__FLOW_RUN_ID."""
    local.add_group(
        name, {"flow-run": {"PREFECT__FLOW_RUN_ID": str(run_id), "PREFECT_API_URL": "x"}}
    )


@dataclass
class Scene:
    """What local ACI and the server hold, and what the sweep must do with each."""

    arm: Local
    groups: dict[str, str]  # name -> "delete", "keep", "skip" (listed only) or "untouched"
    deployments: dict[str, str]
    env: dict[str, str]  # the Prefect side of the command's environment


@pytest.fixture
def identity():
    stand_in = AzureStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def management(tmp_path):
    """Local ACI at https://management.azure.com, reached through a proxy; small pages, so the
    SDKs follow nextLink. Yields (local ACI, environment for the command)."""
    tls = make_tls(tmp_path / "tls", names=("management.azure.com",))
    local = start_local(tmp_path, local_azure(list_page_size=3), tls=tls)
    proxy = AzureHostsProxy({"management.azure.com:443": ("127.0.0.1", local.server.port)})
    env = {**TARGET, **UNSET_AZURE, **local.identity_env(), **proxy.env(), **tls.env()}
    yield local, env
    proxy.close()
    local.close()


@pytest.fixture
def scene(management, prefect_api) -> Scene:
    """Flow runs in each of Prefect's nine states on the real server (and a pool, so the
    workspace is the worker's); for each, a group named and labelled as the worker makes them; the
    worker's own group, a stranger and a look-alike; flow-run deployments of every age and
    state."""
    arm, _ = management
    pool = f"aci-{uuid.uuid4().hex[:8]}"
    flow_name = f"Sweep test: {uuid.uuid4().hex[:6]}!"

    @flow(name=flow_name)
    def noop() -> None:
        pass

    states = {
        "completed": Completed(),
        "failed": Failed(),
        "crashed": Crashed(),
        "cancelled": Cancelled(),
        "running": Running(),
        "scheduled": Scheduled(),
        "pending": Pending(),
        "cancelling": Cancelling(),
        "paused": Paused(),
    }
    names: dict[str, str] = {}
    with (
        temporary_settings({PREFECT_API_URL: prefect_api}),
        get_client(sync_client=True) as client,
    ):
        client.create_work_pool(WorkPoolCreate(name=pool, type="azure-container-instance"))
        for label, state in states.items():
            run = client.create_flow_run(noop)
            client.set_flow_run_state(run.id, state, force=True)
            names[label] = group_name(flow_name, run.id)
            add_flow_run_group(arm, names[label], run.id)
    unknown = uuid.uuid4()
    names["unknown"] = group_name(flow_name, unknown)
    add_flow_run_group(arm, names["unknown"], unknown)
    arm.add_group("prefect-worker", {"prefect-worker": {}})
    arm.add_group("my-app", {"web": {}})
    lookalike = f"lookalike-{uuid.uuid4()}"
    arm.add_group(lookalike, {"web": {}})
    over = ("completed", "failed", "crashed", "cancelled", "unknown")
    groups = {names[label]: "delete" if label in over else "keep" for label in names}
    groups.update({"prefect-worker": "skip", "my-app": "skip", lookalike: "skip"})

    history = {  # name -> (deployed at, provisioning state, verdict)
        f"prefect-{names['completed']}": (DAYS_AGO, "Succeeded", "delete"),
        f"prefect-{names['running']}": (DAYS_AGO, "Failed", "delete"),
        f"prefect-{names['crashed']}": (HOURS_AGO, "Succeeded", "keep"),
        f"prefect-{names['scheduled']}": (DAYS_AGO, "Running", "keep"),
        "prefect-aci-infra": (DAYS_AGO, "Succeeded", "skip"),
        "someone-elses": (DAYS_AGO, "Succeeded", "untouched"),
    }
    for name, (deployed, state, _) in history.items():
        arm.add_deployment(name, deployed, state)
    deployments = {name: verdict for name, (_, _, verdict) in history.items()}
    env = {"PREFECT_API_URL": prefect_api, "PREFECT_ACI_WORK_POOL_NAME": pool}
    return Scene(arm, groups, deployments, env)


def sweep_command(management, scene: Scene, *args: str):
    _, env = management
    return run_cli(
        "azure", "sweep", *args, env={**env, **scene.env, "PREFECT_API_KEY": API_KEY}, timeout=180
    )


def lines_for(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if f" {name}  (" in line]


def test_dry_run_lists_every_verdict_and_deletes_nothing(management, scene):
    result = sweep_command(management, scene, "--dry-run")
    assert result.returncode == 0, result.stderr
    expected = {"delete": "would delete", "keep": "kept", "skip": "skipped"}
    for name, verdict in {**scene.groups, **scene.deployments}.items():
        if verdict == "untouched":
            assert lines_for(result.stdout, name) == []
            continue
        [line] = lines_for(result.stdout, name)
        assert line.startswith(expected[verdict]), line
    assert scene.arm.of("DELETE", "") == []
    assert "nothing was deleted" in result.stdout
    assert "dry run" in result.stderr


def test_sweep_deletes_groups_of_runs_that_are_over_and_old_deployments_only(management, scene):
    arm = scene.arm
    result = sweep_command(management, scene)
    assert result.returncode == 0, result.stderr
    assert arm.group_names() == {n for n, v in scene.groups.items() if v != "delete"}
    assert arm.deployment_names() == {n for n, v in scene.deployments.items() if v != "delete"}
    deleted = {n for n, v in {**scene.groups, **scene.deployments}.items() if v == "delete"}
    for name in deleted:
        [line] = lines_for(result.stdout, name)
        assert line.startswith("deleted"), line
    assert sum(line.startswith("deleted") for line in result.stdout.splitlines()) == len(deleted)
    groups = sum(v == "delete" for v in scene.groups.values())
    deployments = sum(v == "delete" for v in scene.deployments.values())
    assert f"Deleted {groups} container group(s) and {deployments} deployment(s)" in result.stdout
    [worker] = lines_for(result.stdout, "prefect-worker")
    assert worker.startswith("skipped") and "(the worker)" in worker
    assert len(arm.of("DELETE", "")) == len(deleted)
    assert API_KEY not in result.stdout + result.stderr
    # A shorter age takes the young deployment too, and nothing else.
    young = next(
        n for n, v in scene.deployments.items() if v == "keep" and n in arm.deployment_names()
    )
    again = sweep_command(management, scene, "--older-than", "1h")
    assert again.returncode == 0, again.stderr
    assert young not in arm.deployment_names()
    assert arm.group_names() == {n for n, v in scene.groups.items() if v != "delete"}


def test_a_prefect_api_without_the_workers_pool_deletes_nothing(management, scene):
    """Pointed at another workspace, every run would look unknown."""
    scene.env["PREFECT_ACI_WORK_POOL_NAME"] = "no-such-pool"
    result = sweep_command(management, scene)
    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "has no work pool no-such-pool" in line and "nothing was deleted" in line
    assert scene.arm.of("DELETE", "") == []


def _settings(monkeypatch, **env) -> SweepSettings:
    for name, value in {**TARGET, "PREFECT_API_URL": "http://127.0.0.1:9/api", **env}.items():
        monkeypatch.setenv(name, value)
    return load(SweepSettings)


def _local(folder, monkeypatch, role: str | None = None) -> Local:
    """Local ACI in this process, signed in as the deployer (Owner, or ``role``)."""
    local = start_local(folder, local_azure(**({"role": role} if role else {})))
    for name, value in local.identity_env().items():
        monkeypatch.setenv(name, value)
    return local


@pytest.fixture
def arm(tmp_path, monkeypatch):
    local = _local(tmp_path, monkeypatch)
    yield local
    local.close()


def test_an_unreachable_prefect_api_deletes_nothing(arm, monkeypatch):
    run_id = uuid.uuid4()
    add_flow_run_group(arm, group_name("demo", run_id), run_id)
    arm.add_deployment(f"prefect-{group_name('demo', run_id)}", DAYS_AGO)
    settings = _settings(monkeypatch)
    with pytest.raises(UserError, match=r"cannot reach the Prefect API at http://127\.0\.0\.1:9/"):
        sweep(settings, ManagedIdentityCredential(), DAY, False, print, arm.transport())
    assert arm.of("DELETE", "") == []


def test_without_flow_run_groups_the_prefect_api_is_still_needed(arm, monkeypatch):
    """A Running run whose group is gone has no group to be found by: the sweep asks the Prefect
    API for the pool's runs even when no flow run's group is left, and deletes nothing (old
    deployments included) when it cannot."""
    arm.add_deployment("prefect-demo-" + str(uuid.uuid4()), DAYS_AGO)
    arm.add_group("prefect-worker", {"prefect-worker": {}})
    settings = _settings(monkeypatch)
    with pytest.raises(UserError, match=r"cannot reach the Prefect API .* nothing was deleted"):
        sweep(settings, ManagedIdentityCredential(), DAY, False, print, arm.transport())
    assert arm.of("DELETE", "") == []
    assert len(arm.deployment_names()) == 1


def test_refused_deletions_are_each_reported_then_fail_the_command(
    tmp_path, monkeypatch, prefect_api
):
    """The deployer may read the group (Reader) but not delete in it: Azure RBAC refuses."""
    pool = f"aci-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as c:
        c.create_work_pool(WorkPoolCreate(name=pool, type="azure-container-instance"))
    reader = _local(tmp_path, monkeypatch, role=READER)
    try:
        for _ in range(2):
            reader.add_deployment("prefect-demo-" + str(uuid.uuid4()), DAYS_AGO)
        lines: list[str] = []
        settings = _settings(
            monkeypatch, PREFECT_API_URL=prefect_api, PREFECT_ACI_WORK_POOL_NAME=pool
        )
        with pytest.raises(UserError, match=r"2 deletion\(s\) failed.*worker role"):
            sweep(
                settings, ManagedIdentityCredential(), DAY, False, lines.append, reader.transport()
            )
    finally:
        reader.close()
    assert [line.split()[0] for line in lines] == ["failed", "failed"]
    assert all("AuthorizationFailed" in line for line in lines)
    assert len(reader.deployment_names()) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", datetime.timedelta(minutes=30)),
        ("12h", datetime.timedelta(hours=12)),
        ("7d", datetime.timedelta(days=7)),
        ("1d12h", datetime.timedelta(days=1, hours=12)),
        ("2w", datetime.timedelta(weeks=2)),
        ("0s", datetime.timedelta(0)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "7 days", "-1d", "1.5h", "d", "1y"])
def test_a_malformed_duration_is_one_clear_error(text):
    with pytest.raises(UserError, match="--older-than must be a duration like 30m"):
        parse_duration(text)


def test_group_verdicts_follow_the_flow_run_state():
    ids = {state: uuid.uuid4() for state in StateType}
    unknown = uuid.uuid4()
    groups = [FlowRunGroup(f"g-{i}", i) for i in [*ids.values(), unknown]]
    runs = {i: Run(s) for s, i in ids.items()}
    verdicts = {v.name: v.action for v in judge_groups(groups, runs)}
    over = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
    for state, run_id in ids.items():
        assert verdicts[f"g-{run_id}"] == (DELETE if state in over else KEEP), state
    assert verdicts[f"g-{unknown}"] == DELETE


def test_deployment_verdicts_follow_age_and_state():
    verdicts = judge_deployments(
        [
            FlowRunDeployment("old", "Succeeded", DAYS_AGO),
            FlowRunDeployment("old-failed", "Failed", DAYS_AGO),
            FlowRunDeployment("young", "Succeeded", HOURS_AGO),
            FlowRunDeployment("running", "Running", DAYS_AGO),
            FlowRunDeployment("no-time", "Succeeded", None),
        ],
        NOW,
        DAY,
    )
    assert {v.name: v.action for v in verdicts} == {
        "old": DELETE,
        "old-failed": DELETE,
        "young": KEEP,
        "running": KEEP,
        "no-time": KEEP,
    }


@pytest.mark.slow  # runs the command in a subprocess
@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({}, ["--older-than", "soon"], "--older-than must be a duration like 30m"),
        ({"PREFECT_API_URL": None}, [], "PREFECT_API_URL is not set"),
        ({"PREFECT_API_URL": "prefect.example"}, [], "PREFECT_API_URL must be an http(s) URL"),
        ({"AZURE_SUBSCRIPTION_ID": "mine"}, [], "AZURE_SUBSCRIPTION_ID must be a subscription id"),
        ({"AZURE_RESOURCE_GROUP": None}, [], "AZURE_RESOURCE_GROUP is not set"),
        ({"PREFECT_ACI_PREFIX": "Prefect!"}, [], "PREFECT_ACI_PREFIX must be 3-9 lower-case"),
        ({"PREFECT_ACI_WORK_POOL_NAME": "a pool"}, [], "PREFECT_ACI_WORK_POOL_NAME must be 1-100"),
    ],
)
def test_bad_input_is_one_error_line_before_anything_is_sent(identity, env, args, expected):
    result = run_cli(
        "azure",
        "sweep",
        *args,
        env={
            **TARGET,
            **UNSET_AZURE,
            **identity.identity_env(),
            "PREFECT_API_URL": "http://127.0.0.1:9/api",
            "PREFECT_API_KEY": API_KEY,
            **env,
        },
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert expected in line
    assert identity.token_requests == []  # not even a token was asked for
    assert API_KEY not in result.stdout + result.stderr
