"""Register's heartbeat automation: Prefect's documented zombie-run automation for one pool's runs.

The fast tests check what register asks for; the slow ones run a real Prefect server (a
subprocess, with its event and trigger services) and show that the automation is created once,
updated in place, watches only its pool's runs, and really marks a run Crashed when its heartbeats
stop: heartbeats sent as the engine's events client sends them, and a real `prefect flow-run
execute` killed mid-run."""

import asyncio
import contextlib
import contextvars
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events import Event
from prefect.events.clients import get_events_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Running

from blocks.automation import ENDS_THE_WATCH, HEARTBEAT_EVENT, automation_name, zombie_automation
from blocks.inputs import RegistrationSettings, default_window_seconds
from blocks.register import Report, save_heartbeat_automation
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import ImageRecord, Publication
from prefect_aci.core.settings import load
from tests.blocks.test_register import ACR, _render, outcomes, outputs
from tests.blocks.test_register import register as register_command

# The documented automation's expected events ("Detect zombie flows").
DOCUMENTED_EXPECT = {
    "prefect.flow-run.heartbeat",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}


def test_the_automation_is_prefects_documented_one_for_this_pools_runs():
    pool_id = str(uuid.uuid4())
    automation = zombie_automation("aci-pool", pool_id, 240)
    trigger = automation.trigger
    assert automation.name == "prefect-aci: crash runs of aci-pool without heartbeats"
    assert trigger.after == {HEARTBEAT_EVENT}
    assert trigger.expect >= DOCUMENTED_EXPECT
    assert trigger.expect - DOCUMENTED_EXPECT == {
        "prefect.flow-run.Paused",
        "prefect.flow-run.Suspended",
    }
    assert trigger.for_each == {"prefect.resource.id"}
    assert (trigger.posture, trigger.threshold) == ("Proactive", 1)
    assert trigger.within == timedelta(seconds=240)
    assert trigger.match.get("prefect.resource.id") == ["prefect.flow-run.*"]
    assert trigger.match_related.get("prefect.resource.id") == [f"prefect.work-pool.{pool_id}"]
    assert trigger.match_related.get("prefect.resource.role") == ["work-pool"]
    [action] = automation.actions
    assert action.type == "change-flow-run-state"
    assert action.state == StateType.CRASHED and not action.force
    assert "No heartbeat for 240 s" in action.message


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env of this checkout
    for name in list(os.environ):
        if name.startswith("PREFECT_ACI_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_heartbeats_every_minute_and_a_window_of_three_plus_a_minute_by_default(clean_env):
    settings = load(RegistrationSettings)
    assert settings.heartbeat_seconds == 60
    assert settings.window_seconds == default_window_seconds(60) == 240
    clean_env.setenv("PREFECT_ACI_HEARTBEAT_SECONDS", "45")
    assert load(RegistrationSettings).window_seconds == 3 * 45 + 60
    clean_env.setenv("PREFECT_ACI_HEARTBEAT_WINDOW_SECONDS", "100")
    assert load(RegistrationSettings).window_seconds == 100


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"PREFECT_ACI_HEARTBEAT_SECONDS": "10"}, "PREFECT_ACI_HEARTBEAT_SECONDS"),
        ({"PREFECT_ACI_HEARTBEAT_WINDOW_SECONDS": "5"}, "PREFECT_ACI_HEARTBEAT_WINDOW_SECONDS"),
        ({"PREFECT_ACI_HEARTBEAT_WINDOW_SECONDS": "60"}, "must be longer than"),
        (
            {"PREFECT_ACI_POOL_ENV": '{"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}'},
            "set PREFECT_ACI_HEARTBEAT_SECONDS instead",
        ),
    ],
)
def test_heartbeat_settings_prefect_or_the_window_would_not_honour_are_refused(
    clean_env, env, refused
):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(UserError, match=refused):
        load(RegistrationSettings)


# --- against a real Prefect server ---------------------------------------------------------------


@pytest.fixture
def api(prefect_process_server):
    with temporary_settings({PREFECT_API_URL: prefect_process_server}):
        yield prefect_process_server


def new_pool(kind: str = "azure-container-instance") -> tuple[str, str]:
    name = f"aci-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        pool_id = client.create_work_pool(WorkPoolCreate(name=name, type=kind)).id
    return name, str(pool_id)


def automations(pool: str):
    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(automation_name(pool))


def step(pool: str, window: int, dry_run: bool = False) -> list[str]:
    report = Report(pool, dry_run=dry_run)
    save_heartbeat_automation(pool, window, report, dry_run)
    return [line.split(None, 1)[0] for line in report.lines]


def test_register_makes_one_automation_and_updates_it_in_place(api):
    pool, pool_id = new_pool()
    assert step(pool, 240, dry_run=True) == ["would-create"]
    assert automations(pool) == []
    assert step(pool, 240) == ["created"]
    assert step(pool, 240) == ["unchanged"]
    [made] = automations(pool)
    assert made.enabled
    assert made.trigger.within == timedelta(seconds=240)
    assert made.trigger.match_related.get("prefect.resource.id") == [f"prefect.work-pool.{pool_id}"]
    assert made.trigger.expect == {HEARTBEAT_EVENT, *ENDS_THE_WATCH}
    assert [a.state for a in made.actions] == [StateType.CRASHED]
    assert step(pool, 300, dry_run=True) == ["would-update"]
    assert automations(pool)[0].trigger.within == timedelta(seconds=240)
    assert step(pool, 300) == ["updated"]
    [updated] = automations(pool)
    assert updated.id == made.id
    assert updated.trigger.within == timedelta(seconds=300)
    assert step(pool, 300) == ["unchanged"]


def test_a_second_automation_of_the_same_name_is_folded_into_one(api):
    pool, pool_id = new_pool()
    with get_client(sync_client=True) as client:
        for window in (100, 200):
            client.create_automation(zombie_automation(pool, pool_id, window))
    assert step(pool, 240) == ["updated"]
    [kept] = automations(pool)
    assert kept.trigger.within == timedelta(seconds=240)


async def _heartbeat(flow_run_id, pool_id: str) -> None:
    """One heartbeat as the engine sends it: the run as resource, its work pool related (the
    events client adds it from the run's context)."""
    async with get_events_client() as events:
        await events.emit(
            Event(
                event=HEARTBEAT_EVENT,
                resource={"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"},
                related=[
                    {
                        "prefect.resource.id": f"prefect.work-pool.{pool_id}",
                        "prefect.resource.role": "work-pool",
                    }
                ],
            )
        )


def running_run(name: str):
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow(lambda: None, name="heartbeat-test"), name=name)
        client.set_flow_run_state(run.id, Running())
    return run.id


def state_of(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def test_the_server_crashes_a_run_of_the_pool_whose_heartbeats_stop(api):
    """Window 10 s (Prefect's least for a proactive trigger). Three runs each send a heartbeat:
    the silent one of this pool is Crashed; one of this pool that keeps beating, and a silent one
    of another pool, stay Running."""
    window = 10
    pool, pool_id = new_pool()
    _, other_pool_id = new_pool()
    assert step(pool, window) == ["created"]
    time.sleep(6)  # the triggers service reloads automations every 5 s
    silent, beating, stranger = (running_run(n) for n in ("silent", "beating", "stranger"))
    asyncio.run(_heartbeat(silent, pool_id))
    asyncio.run(_heartbeat(stranger, other_pool_id))
    started = time.monotonic()
    stop = threading.Event()

    def keep_beating():
        while not stop.is_set():
            asyncio.run(_heartbeat(beating, pool_id))
            stop.wait(3)

    # The thread sees this test's API URL only in a copy of this context.
    beater = threading.Thread(target=contextvars.copy_context().run, args=(keep_beating,))
    beater.start()
    try:
        while state_of(silent).type == StateType.RUNNING:
            assert time.monotonic() - started < window + 50, "not Crashed in time"
            time.sleep(1)
        took = time.monotonic() - started
        crashed = state_of(silent)
        time.sleep(5)  # past the stranger's window too, with the server's evaluation period
        assert state_of(beating).type == StateType.RUNNING
        assert state_of(stranger).type == StateType.RUNNING
    finally:
        stop.set()
        beater.join(10)
    assert crashed.type == StateType.CRASHED
    assert f"No heartbeat for {window} s" in crashed.message
    assert window <= took < window + 50


# --- a real `prefect flow-run execute` ---------------------------------------------------------

HOLD_FLOW = """
import time
from prefect import flow

@flow(name="hold")
def hold(seconds: float = 0):
    time.sleep(seconds)
"""


def execute(api: str, tmp_path, pool: str, hold: float, heartbeat: int = 30):
    """A deployment of a flow that sleeps ``hold`` s, in ``pool``; its run started as ACI starts
    it, `prefect flow-run execute`, with PREFECT_FLOWS_HEARTBEAT_FREQUENCY as the pool's env sets
    it. Returns the run's id and the process (in a session of its own)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "hold.py").write_text(HOLD_FLOW)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("hold")
        deployment = client.create_deployment(
            flow_id=flow_id,
            name=f"hold-{uuid.uuid4().hex[:6]}",
            entrypoint="hold.py:hold",
            path=str(code),
            work_pool_name=pool,
        )
        run = client.create_flow_run_from_deployment(deployment, parameters={"seconds": hold})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "flow-run", "execute", str(run.id)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return run.id, process


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it: the engine runs in a session of its own
    (prefect/runner/_starter_engine.py, isolate_process_group), so a group kill misses it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, queue = [], [pid]
    while queue:
        tree.append(current := queue.pop())
        queue.extend(children.get(current, []))
    return tree


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL to the process and all it started, as when a container is killed (nothing once
    it has ended: its id may be another process's by then)."""
    if process.poll() is not None:
        return
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture
def started():
    """Processes a test starts, killed with all they started at its end."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        kill_tree(process)


def heartbeats(flow_run_id):
    with get_client(sync_client=True) as client:
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[HEARTBEAT_EVENT]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
            ),
            limit=50,
        )
    return sorted(page.events, key=lambda event: event.occurred)


def test_flow_run_execute_sends_heartbeats_at_the_frequency_naming_the_work_pool(
    api, tmp_path, started
):
    """prefect 3.9.1's engine, started by `prefect flow-run execute`, beats at once and then every
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds, and each beat names the run's work pool."""
    pool, pool_id = new_pool("process")
    flow_run_id, process = execute(api, tmp_path, pool, hold=35)
    started.append(process)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode()[-3000:]
    assert state_of(flow_run_id).type == StateType.COMPLETED
    deadline = time.monotonic() + 20
    while len(beats := heartbeats(flow_run_id)) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(beats) == 2, beats
    assert timedelta(seconds=30) <= beats[1].occurred - beats[0].occurred < timedelta(seconds=35)
    for beat in beats:
        pools = [r.id for r in beat.related if r.role == "work-pool"]
        assert pools == [f"prefect.work-pool.{pool_id}"]


def test_a_killed_flow_run_execute_is_crashed_by_the_automation(api, tmp_path, started):
    """The container dies (SIGKILL to `prefect flow-run execute` and its engine) while the run is
    Running: no final state is reported, and the automation marks the run Crashed one window
    after its last heartbeat."""
    window = 40  # longer than the least heartbeat interval Prefect allows, 30 s
    pool, _ = new_pool("process")
    assert step(pool, window) == ["created"]
    time.sleep(6)
    flow_run_id, process = execute(api, tmp_path, pool, hold=600)
    started.append(process)
    deadline = time.monotonic() + 90
    while not heartbeats(flow_run_id):
        assert time.monotonic() < deadline and process.poll() is None, "no heartbeat"
        time.sleep(1)
    kill_tree(process)
    killed = time.monotonic()
    assert state_of(flow_run_id).type == StateType.RUNNING
    while (state := state_of(flow_run_id)).type == StateType.RUNNING:
        assert time.monotonic() - killed < window + 60, "not Crashed in time"
        time.sleep(1)
    assert state.type == StateType.CRASHED
    assert f"No heartbeat for {window} s" in state.message


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def hand_made_records(tmp_path):
    """The two records register reads, written by hand (no image is built: register reads only
    the published reference)."""
    image = ImageRecord(
        image_id="sha256:" + "5" * 64,
        repository="prefect-aci",
        local_tags=["prefect-aci:test"],
        base_image="python:3.12-slim-bookworm",
        versions={"python": "3.12", "prefect": "3.9.1", "prefect_azure": "0.4.13"},
        published=Publication(
            registry=ACR, repository="prefect-aci", tags=["t"], digest="sha256:" + "3" * 64
        ),
    )
    (tmp_path / "image.json").write_text(image.model_dump_json())
    (tmp_path / "azure.json").write_text(json.dumps(outputs()))
    return tmp_path / "image.json", tmp_path / "azure.json"


def test_prefect_aci_register_twice_leaves_one_automation_following_the_settings(
    prefect_process_server, hand_made_records
):
    api = prefect_process_server
    pool = f"aci-{uuid.uuid4().hex[:8]}"
    name = automation_name(pool)
    dry = register_command(api, hand_made_records, pool, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert outcomes(dry)[f"automation {name!r}"] == "would-create"
    first = register_command(api, hand_made_records, pool)
    assert first.returncode == 0, first.stderr
    assert outcomes(first)[f"automation {name!r}"] == "created"
    again = register_command(api, hand_made_records, pool)
    assert again.returncode == 0, again.stderr
    assert set(outcomes(again).values()) == {"unchanged"}, again.stdout
    assert len(outcomes(again)) == 5
    faster = register_command(
        api, hand_made_records, pool, env={"PREFECT_ACI_HEARTBEAT_SECONDS": "45"}
    )
    assert faster.returncode == 0, faster.stderr
    assert outcomes(faster)[f"automation {name!r}"] == "updated"
    assert outcomes(faster)[f"work pool '{pool}' (azure-container-instance)"] == "updated"
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        pool_read = client.read_work_pool(pool)
        [automation] = client.read_automations_by_name(name)
        # The container's env as prefect-azure's worker renders it, for a deployment that adds
        # env of its own (Prefect merges it into the pool's).
        config = _render(pool_read.base_job_template, {"env": {"TEAM": "data"}})
    container = config.arm_template["resources"][0]["properties"]["containers"][0]["properties"]
    env = {v["name"]: v.get("value") for v in container["environmentVariables"]}
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "45"
    assert env["TEAM"] == "data"
    assert automation.trigger.within == timedelta(seconds=3 * 45 + 60)
    related = automation.trigger.match_related.get("prefect.resource.id")
    assert related == [f"prefect.work-pool.{pool_read.id}"]
