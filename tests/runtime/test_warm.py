"""The waiting mode (`python -m prefect_aci_runtime.warm`) in a real container of the built image,
started as a standby pool member is: it waits, a config map file makes it run the flow run in the
same process against a real Prefect server, and nobody claiming it ends it with 0."""

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from prefect import get_client
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_aci.core.paths import PROJECT_ROOT

# The contract with the profile's container command (the template helper's).
ENTRYPOINT = ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
COMMAND = ["python", "-m", "prefect_aci_runtime.warm"]
CONFIG_MAP = "/mnt/configmap/prefect-job"
FLOW_SOURCE = """
import os
from prefect import flow, get_run_logger

@flow
def warm_flow():
    get_run_logger().info("ran in process %d, label %s", os.getpid(), os.environ["RUN_LABEL"])
"""


def readable(folder: Path) -> Path:
    """The container's user (uid 1000) reads a bind-mounted folder of the test."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    return folder


def write_key(folder: Path, key: str, value: str) -> None:
    """One config map key, appearing at once: written beside it, then renamed (warm.py skips
    dot files, as ACI's own)."""
    partial = folder / f".{key}.partial"
    partial.write_text(value)
    partial.chmod(0o644)
    partial.rename(folder / key)


def wait_for_line(container, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while True:
        logs = container.logs().decode()
        if text in logs:
            return logs
        container.reload()
        assert container.status == "running", logs[-3000:]
        assert time.monotonic() < deadline, logs[-3000:]
        time.sleep(0.2)


def start_member(docker_client, image: str, flows: Path, config_map: Path):
    """A pool member: the image's waiting command, the test's flows and config map mounted, the
    host's network (the Prefect server on loopback); returned once it waits."""
    container = docker_client.containers.run(
        image,
        COMMAND,
        entrypoint=ENTRYPOINT,
        network_mode="host",
        volumes={
            str(flows): {"bind": "/flows", "mode": "ro"},
            str(config_map): {"bind": CONFIG_MAP, "mode": "ro"},
        },
        detach=True,
    )
    try:
        wait_for_line(container, "waiting for")
    except BaseException:
        container.remove(force=True)
        raise
    return container


def new_flow_run(api: str, entrypoint: str):
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.create_flow_run(load_flow_from_entrypoint(entrypoint))


def completed(api: str, flow_run_id) -> bool:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.is_completed()


def test_nobody_claiming_it_exits_0_after_the_max_wait(docker_client, image):
    started = time.monotonic()
    container = docker_client.containers.run(
        image,
        COMMAND,
        entrypoint=ENTRYPOINT,
        environment={"PREFECT_ACI_WARM_MAX_WAIT_SECONDS": "3"},
        network_mode="none",
        detach=True,
    )
    try:
        code = container.wait(timeout=120)["StatusCode"]
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert code == 0, logs[-3000:]
    assert "no claim in 3 s; exiting so the pool refills" in logs
    assert time.monotonic() - started < 60


def test_a_config_map_file_runs_the_flow_run_in_the_waiting_process(
    docker_client, image, prefect_process_server, tmp_path
):
    flows, config_map = readable(tmp_path / "flows"), readable(tmp_path / "configmap")
    (flows / "warm_flow.py").write_text(FLOW_SOURCE)
    (flows / "warm_flow.py").chmod(0o644)
    container = start_member(docker_client, image, flows, config_map)
    try:
        flow_run = new_flow_run(prefect_process_server, f"{flows / 'warm_flow.py'}:warm_flow")
        # The claim: the run's environment first, its id last (a member acts on the id).
        write_key(config_map, "PREFECT_API_URL", prefect_process_server)
        write_key(config_map, "PREFECT__FLOW_ENTRYPOINT", "/flows/warm_flow.py:warm_flow")
        write_key(config_map, "RUN_LABEL", "nightly")
        claimed = time.monotonic()
        write_key(config_map, "PREFECT__FLOW_RUN_ID", str(flow_run.id))
        code = container.wait(timeout=180)["StatusCode"]
        elapsed = time.monotonic() - claimed
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert code == 0, logs[-3000:]
    # The process that waited ran the flow (no second interpreter paid the imports again).
    waiter = re.search(r"warm: claimed in process (\d+); applying (.*)", logs)
    assert waiter, logs[-3000:]
    assert f"ran in process {waiter[1]}, label nightly" in logs, logs[-3000:]
    # Names of what was applied, never values.
    assert waiter[2] == "PREFECT_API_URL, PREFECT__FLOW_ENTRYPOINT, PREFECT__FLOW_RUN_ID, RUN_LABEL"
    assert completed(prefect_process_server, flow_run.id)
    print(f"claim to exit: {elapsed:.2f} s")


EXTRA_FLOW_SOURCE = """
from prefect import flow, get_run_logger

@flow
def extra_flow():
    import prefect_aci_extra

    get_run_logger().info("extra says %s", prefect_aci_extra.WORD)
"""


def tiny_wheel(folder: Path) -> Path:
    """A wheel of one module, installable with no index (the test reaches no network)."""
    name = "prefect_aci_extra-0.1-py3-none-any.whl"
    dist = "prefect_aci_extra-0.1.dist-info"
    files = {
        "prefect_aci_extra.py": 'WORD = "hello from an extra package"\n',
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: prefect-aci-extra\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    (folder / name).chmod(0o644)
    return folder / name


def test_a_claim_asking_for_extra_packages_installs_them_then_runs(
    docker_client, image, prefect_process_server, tmp_path
):
    """EXTRA_PIP_PACKAGES in the claim: the member started before the run asked, so it installs
    them through the image's entrypoint and runs the flow run there, as a cold group would."""
    flows, config_map = readable(tmp_path / "flows"), readable(tmp_path / "configmap")
    (flows / "extra_flow.py").write_text(EXTRA_FLOW_SOURCE)
    (flows / "extra_flow.py").chmod(0o644)
    wheel = tiny_wheel(flows)
    container = start_member(docker_client, image, flows, config_map)
    try:
        flow_run = new_flow_run(prefect_process_server, f"{flows / 'extra_flow.py'}:extra_flow")
        write_key(config_map, "PREFECT_API_URL", prefect_process_server)
        write_key(config_map, "PREFECT__FLOW_ENTRYPOINT", "/flows/extra_flow.py:extra_flow")
        write_key(config_map, "EXTRA_PIP_PACKAGES", f"/flows/{wheel.name}")
        write_key(config_map, "PREFECT__FLOW_RUN_ID", str(flow_run.id))
        code = container.wait(timeout=180)["StatusCode"]
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert code == 0, logs[-3000:]
    assert "installing EXTRA_PIP_PACKAGES with uv" in logs, logs[-3000:]
    assert "extra says hello from an extra package" in logs, logs[-3000:]
    assert completed(prefect_process_server, flow_run.id)


def test_warm_up_imports_the_engine_prefect_azure_and_the_azure_sdks():
    """Import-time trace of the warm-up on this machine (`python -X importtime`): the modules a
    flow run needs are imported, and the figure is printed for the record."""
    probe = "import prefect_aci_runtime.warm as w; w.warm_up()"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "runtime")},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cumulative, top_level = {}, {}
    for line in result.stderr.splitlines()[1:]:
        _, total, name = line.split("|")
        cumulative[name.strip()] = int(total)
        # Nested imports are indented under the one that caused them.
        if not name.startswith("  "):
            top_level[name.strip()] = int(total)
    for module in ("prefect.flows", "prefect_azure.credentials", "azure.identity"):
        assert module in cumulative
    heaviest = sorted(top_level.items(), key=lambda item: -item[1])[:4]
    print("warm-up imports, heaviest:", ", ".join(f"{n} {t / 1e6:.2f} s" for n, t in heaviest))
