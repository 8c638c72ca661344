"""A standby pool member's command: import what a flow run needs, wait for the claim's config map,
then run the flow run in this process.

The container command is `/usr/bin/tini -g -- /opt/prefect/entrypoint.sh python -m
prefect_aci_runtime.warm` (tini stays PID 1). ACI mounts each config map key as a file,
`/mnt/configmap/<container>/<KEY>`; the worker's claim (prefect_aci_runtime.worker) names the
flow run in `PREFECT__FLOW_RUN_ID` and puts the run's other non-secret environment beside it. A
group created cold, when the pool had none ready, gets its map at start: the same path serves both.
A member nobody claims exits 0 after PREFECT_ACI_WARM_MAX_WAIT_SECONDS, so the pool refills.
"""

import importlib
import logging
import os
import runpy
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

FLOW_RUN_ID = "PREFECT__FLOW_RUN_ID"
# Requirements the image's entrypoint installs before its command (docker/entrypoint.sh).
EXTRA_PACKAGES = "EXTRA_PIP_PACKAGES"
ENTRYPOINT_SCRIPT = "/opt/prefect/entrypoint.sh"
CONFIG_MAP_DIR = Path("/mnt/configmap/prefect-job")
# Settings of this module (the profile's environment sets them; tests point the directory away).
CONFIG_MAP_DIR_ENV = "PREFECT_ACI_CONFIG_MAP_DIR"
MAX_WAIT_ENV = "PREFECT_ACI_WARM_MAX_WAIT_SECONDS"
POLL_ENV = "PREFECT_ACI_WARM_POLL_SECONDS"
CANCEL_POLL_ENV = "PREFECT_ACI_WARM_CANCEL_POLL_SECONDS"
# How often a claimed run checks for a cancel: Prefect's runner checks every 10 s.
DEFAULT_CANCEL_POLL_SECONDS = 5.0
# An hour: long enough that a pool sized for its load rarely churns, short enough that a member
# whose profile settings went stale (a rotated key, a moved API) is replaced the same day.
DEFAULT_MAX_WAIT_SECONDS = 3600.0
DEFAULT_POLL_SECONDS = 0.1

# What `prefect flow-run execute` and the engine import before the flow's own code, measured with
# `python -X importtime` (tests/runtime/test_warm.py prints the figure): the engine and its
# client, the deployment pull steps, blob storage and Key Vault as the demo flow uses them.
WARM_MODULES = (
    "prefect.flow_engine",
    "prefect.flows",
    "prefect.client.orchestration",
    "prefect.deployments.steps",
    "prefect.logging.handlers",
    "prefect._internal.metrics",
    "prefect_azure",
    "prefect_azure.blob_storage",
    "adlfs",
    "azure.identity",
    "azure.storage.blob",
    "azure.keyvault.secrets",
)

logger = logging.getLogger("prefect_aci_runtime.warm")


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        message = f"prefect-aci warm: {name} must be a number of seconds; got {raw!r}"
        raise SystemExit(message) from None
    if value <= 0:
        raise SystemExit(f"prefect-aci warm: {name} must be more than 0 seconds; got {raw!r}")
    return value


def warm_up() -> None:
    """Import WARM_MODULES; one that is missing (a trimmed image) is skipped, not fatal."""
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            logger.warning("warm: could not import %s (%s); the flow run will import it", name, exc)


def read_config_map(directory: Path) -> dict[str, str]:
    """The config map's keys and values; ACI's own entries (dot files) are not keys."""
    if not directory.is_dir():
        return {}
    return {
        path.name: path.read_text()
        for path in sorted(directory.iterdir())
        if not path.name.startswith(".") and path.is_file()
    }


def _flow_run_id(values: Mapping[str, str]) -> str | None:
    """The claim's flow run id, or None while the file is absent or half written."""
    raw = values.get(FLOW_RUN_ID, "").strip()
    try:
        return str(uuid.UUID(raw)) if raw else None
    except ValueError:
        return None


def wait_for_claim(directory: Path, max_wait: float, poll: float) -> dict[str, str] | None:
    """The config map once it names a flow run, or None after ``max_wait`` seconds."""
    deadline = time.monotonic() + max_wait
    while True:
        values = read_config_map(directory)
        if _flow_run_id(values):
            return values
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def watch_for_cancel(flow_run_id: str, poll: float) -> None:
    """What `prefect flow-run execute`'s runner does for a run it supervises, for the run this
    process runs itself: once the run is Cancelling (a cancel from the UI or API; Prefect's worker
    only cancels runs that have not started), mark it Cancelled and end the process. The container
    exits, and the worker deletes the group as after any run. The flow's on_cancellation hooks do
    not run. Runs in a daemon thread until the process ends."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.context import root_settings_context
    from prefect.states import Cancelled

    with root_settings_context():
        while True:
            time.sleep(poll)
            try:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(uuid.UUID(flow_run_id)).state
                    if state is None or state.type != StateType.CANCELLING:
                        continue
                    client.set_flow_run_state(
                        uuid.UUID(flow_run_id),
                        Cancelled(message="Flow run was cancelled; its container stopped it."),
                        force=True,
                    )
            except Exception as exc:
                logger.debug("warm: could not read the run's state (%s)", exc)
                continue
            logger.info("warm: the flow run was cancelled; stopping")
            logging.shutdown()
            os._exit(0)


def run_flow_run(flow_run_id: str) -> None:
    """Prefect's engine entry point (`python -m prefect.engine <id>`), run in this process so the
    imports above are not paid again. It loads the flow run, runs the deployment's pull steps,
    runs the flow and exits as the engine does."""
    from prefect.context import root_settings_context

    sys.argv = ["prefect.engine", flow_run_id]
    # The settings were read at import, before the config map's values existed: read them again.
    with root_settings_context(), warnings.catch_warnings():
        # flow_engine already imported prefect.engine; running it as __main__ is still what
        # `python -m prefect.engine` does, and runpy's warning says only that.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def main() -> None:
    # Prefect's logging configuration (set up by the imports) prints these lines.
    logger.setLevel(logging.INFO)
    directory = Path(os.environ.get(CONFIG_MAP_DIR_ENV) or CONFIG_MAP_DIR)
    max_wait = _seconds(MAX_WAIT_ENV, DEFAULT_MAX_WAIT_SECONDS)
    poll = _seconds(POLL_ENV, DEFAULT_POLL_SECONDS)
    started = time.monotonic()
    warm_up()
    logger.info(
        "warm: imports done in %.2f s; waiting for %s", time.monotonic() - started, directory
    )
    if _flow_run_id(os.environ) and not directory.is_dir():
        # Started with the run in its environment (a plain group, not a pool member).
        values = {}
    else:
        values = wait_for_claim(directory, max_wait, poll)
    if values is None:
        logger.info("warm: no claim in %.0f s; exiting so the pool refills", max_wait)
        raise SystemExit(0)
    # Names only: values may be anything a deployment put in its environment.
    logger.info(
        "warm: claimed in process %d; applying %s",
        os.getpid(),
        ", ".join(sorted(values)) or "no config map",
    )
    installed = os.environ.get(EXTRA_PACKAGES, "").strip()
    os.environ.update(values)
    flow_run_id = str(uuid.UUID(os.environ[FLOW_RUN_ID].strip()))
    wanted = os.environ.get(EXTRA_PACKAGES, "").strip()
    if wanted and wanted != installed:
        # The image's entrypoint installs them before its command starts, and this process
        # started before the run asked: start again through it, with the run's environment (the
        # new process finds them asked for at its start, and the config map already there).
        logger.info(
            "warm: the run asks for %s; the entrypoint installs them and the run starts afresh "
            "in this container",
            EXTRA_PACKAGES,
        )
        command = [ENTRYPOINT_SCRIPT, sys.executable, "-m", "prefect_aci_runtime.warm"]
        os.execv(ENTRYPOINT_SCRIPT, command)  # noqa: S606 (our own entrypoint, fixed arguments)
    threading.Thread(
        target=watch_for_cancel,
        args=(flow_run_id, _seconds(CANCEL_POLL_ENV, DEFAULT_CANCEL_POLL_SECONDS)),
        name="prefect-aci-cancel-watch",
        daemon=True,
    ).start()
    run_flow_run(flow_run_id)


if __name__ == "__main__":
    main()
