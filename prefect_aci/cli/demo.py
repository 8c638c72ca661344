"""`prefect-aci demo up|down|status|env|az|bench` (make demo, make demo-down, make demo-status)."""

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from docker.errors import APIError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prefect_aci.cli.common import command_group
from prefect_aci.core.console import console
from prefect_aci.core.engine import connect, ensure_programs
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import (
    BUILD_DIR,
    DEMO_DIR,
    IMAGE_RECORD,
    SERVER_RECORD,
)
from prefect_aci.demo import bench as demo_bench
from prefect_aci.demo import images, stack
from prefect_aci.demo.flow_run import DemoRun

app = command_group(
    "The whole thing on this machine, no Azure account: a local registry, Azurite, a Prefect "
    "server from our image with its UI, a worker, and the demo flow. Needs a Docker engine, "
    "Debian's docker-registry and npm (for Azurite), installed on Debian as root when missing; "
    "reads no Azure setting."
)

ServerRecord = Annotated[
    Path, typer.Option(help="Record of the image's server variant (with the Prefect UI).")
]


StateDir = Annotated[
    Path,
    typer.Option(
        help="Folder of the stack's state, logs and data; stacks in different folders are "
        "independent of each other."
    ),
]


# Every member is a running container on this machine.
MAX_DEMO_STANDBY = 20


def warm_line(run: DemoRun) -> str:
    """Whether the demo run was warm, as its group's GET said, and the pool after it."""
    if run.warm:
        how = "warm: its group was claimed from the standby pool (isCreatedFromStandbyPool)"
    elif run.warm is False:
        how = "cold: no member was ready, so ACI created its group (the standby pool's fallback)"
    else:
        how = "warm or cold: unknown (its group was gone before it could be read)"
    if run.ready_after is not None:
        ready, size = run.ready_after
        how += f"; standby pool {ready}/{size} ready after it"
    return f"Its start:      {how}"


@app.command()
def up(
    record: Annotated[Path, typer.Option(help="Built image record.")] = IMAGE_RECORD,
    server_record: ServerRecord = SERVER_RECORD,
    state_dir: StateDir = DEMO_DIR,
    port: Annotated[
        int | None,
        typer.Option(help="Port of the Prefect UI and API on 127.0.0.1 (default 4200 if free)."),
    ] = None,
    build: Annotated[
        bool,
        typer.Option(help="Build the image first (cached); --no-build runs the recorded one."),
    ] = True,
    standby: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_DEMO_STANDBY,
            help="Ready members of an ACI standby pool (0: none): the demo flow then runs warm, "
            "in a group claimed from it.",
        ),
    ] = 0,
) -> None:
    """Start the stack, deploy the demo flow with its code in Azurite, run it, show the result
    and where to see it in the Prefect UI."""
    client = connect()
    # Debian's registry stands in for ACR, npm installs Azurite.
    ensure_programs("docker-registry", "npm")
    built = images(record, server_record, build, console)
    try:
        state, run = stack.up(client, *built, state_dir, console, port, standby)
    except APIError as exc:
        raise UserError(
            f"Docker refused a step of the stack ({exc.explanation}); see the step above, "
            "then `make demo-down` and `make demo` again"
        ) from None
    console.rule(f"flow run {run.flow_run_id}: {run.state_name}")
    for line in run.logs:
        console.print(escape(line), highlight=False)
    console.rule()
    if run.warm is not None or run.ready_after is not None:
        console.print(warm_line(run), highlight=False)
    console.print(f"Prefect UI:     {state.ui}", highlight=False)
    console.print(f"This flow run:  {state.flow_run_page()}", highlight=False)
    login = stack.auth_string_file(state_dir)
    if login.is_file():
        console.print(
            f"The UI asks for a password: paste the line in {login} (`cat {login}`); "
            '`eval "$(prefect-aci demo env)"` points your own `prefect` CLI at the stack.',
            highlight=False,
        )
    console.print(
        'Look at its local Azure with the Azure CLI: `eval "$(prefect-aci demo az)"` (after '
        "`make az`), then e.g. `az container list --resource-group "
        f"{stack.resource_group(state_dir)} --output table`.",
        highlight=False,
    )
    console.print(
        "The stack keeps running: `prefect-aci demo status` (make demo-status) shows it, "
        "`make demo-down` removes it.",
        highlight=False,
    )
    if run.state != "COMPLETED":
        raise UserError(f"the demo flow run ended {run.state_name}: {run.message}")


@app.command()
def down(state_dir: StateDir = DEMO_DIR) -> None:
    """Remove everything `up` started (processes, containers), nothing else."""
    stack.down(connect(start=False), state_dir, console)


@app.command()
def status(state_dir: StateDir = DEMO_DIR) -> None:
    """Say what of the stack runs and where (UI, API, registry, Azurite, worker, the last run's
    page); exits 1 when a part has stopped."""
    parts = stack.status(connect(start=False), state_dir)
    if not parts:
        console.print(f"No demo stack was started from {state_dir}; `make demo` starts one.")
        return
    for name, where, running in parts:
        mark = "[green]running[/]" if running else "[red]stopped[/]"
        console.print(f"{mark:<20} {name:<20} {escape(where)}", highlight=False)
    if not all(running for _, _, running in parts):
        raise UserError("part of the demo stack has stopped; `make demo` starts it afresh")


@app.command()
def env(state_dir: StateDir = DEMO_DIR) -> None:
    """Print the shell settings that point `prefect-aci deploy-all` at the running stack's local
    Azure (its subscription, Resource Manager, the deployer's sign-in, the stack's Prefect
    server), for `eval "$(prefect-aci demo env)"`; secrets are read from their files, never
    printed. Then deploy as on Azure with the command it names; your own `prefect` CLI reaches
    the stack's server with the same settings (PREFECT_API_URL, PREFECT_API_AUTH_STRING)."""
    settings, command = stack.deploy_all_settings(connect(start=False), state_dir)
    print("# The local Azure of the demo stack in " + str(state_dir) + "; then run:")
    flags = command.removeprefix("deploy-all ")
    print(f"#   make deploy-all DEPLOY_ALL_FLAGS={shlex.quote(flags)}")
    print("unset AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_TENANT_ID AZURE_USERNAME AZURE_PASSWORD")
    # Set empty rather than unset: a Prefect Cloud key in .env must not reach the local worker.
    print("export PREFECT_API_KEY=")
    for name, value in settings.items():
        print(f"export {name}={value}")


@app.command()
def az(state_dir: StateDir = DEMO_DIR) -> None:
    """Print the shell lines that set the Azure CLI up for the running stack's local Azure, for
    `eval "$(prefect-aci demo az)"`: its own config folder in the state folder (never
    ~/.azure), the stack's CA bundle, the proxy to Azure's names (a vault's), the cloud
    registered from local Resource Manager's metadata endpoint, and `az login --identity` as
    the deployer (its secret read from its file, never printed). `make az` installs the CLI
    in .venv-az."""
    for line in stack.az_setup(connect(start=False), state_dir):
        print(line)


@app.command()
def bench(
    record: Annotated[Path, typer.Option(help="Built image record.")] = IMAGE_RECORD,
    server_record: ServerRecord = SERVER_RECORD,
    runs: Annotated[
        int,
        typer.Option(
            min=demo_bench.MIN_RUNS,
            max=demo_bench.MAX_RUNS,
            help="Runs one at a time, cold and warm each (their medians).",
        ),
    ] = demo_bench.MIN_RUNS,
    burst: Annotated[
        int,
        typer.Option(
            min=1, max=demo_bench.MAX_BURST, help="Runs submitted at once, cold then warm."
        ),
    ] = 10,
    big_burst: Annotated[
        int,
        typer.Option(
            min=0,
            max=demo_bench.MAX_BIG_BURST,
            help="Cold runs submitted at once through one worker (0 skips it).",
        ),
    ] = demo_bench.MAX_BIG_BURST,
    standby: Annotated[
        int,
        typer.Option(
            min=1,
            max=demo_bench.MAX_STANDBY,
            help="Ready members of the stack's standby pool (the warm runs claim them); at least "
            "--burst for a burst all warm.",
        ),
    ] = 10,
    output: Annotated[Path, typer.Option(help="Where to write the figures.")] = (
        BUILD_DIR / "local-aci-bench.json"
    ),
    build: Annotated[bool, typer.Option(help="Build the image first (cached).")] = True,
) -> None:
    """Time flow runs through the ACI workers on local ACI, cold (a new group per run) and warm
    (a group claimed from a standby pool) in the same stack: one at a time (medians), a burst of
    each at once, then a big burst of cold runs through one worker (its peak memory); a stack of
    its own (build/bench-demo), removed after. Writes the figures to --output."""
    demo_bench.check_options(runs, burst, big_burst, standby)
    client = connect()
    ensure_programs("docker-registry", "npm")
    built = images(record, server_record, build, console)
    figures = demo_bench.bench_stack(
        client,
        built,
        BUILD_DIR / "bench-demo",
        runs,
        burst,
        console,
        big_burst=big_burst,
        standby=standby,
    )
    Console().print(bench_table(figures))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures.as_dict(), indent=2) + "\n")
    console.print(f"Wrote {output}")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def bench_table(figures: demo_bench.BenchFigures) -> Table:
    """The figures as `demo bench` prints them."""
    result = figures.as_dict()
    n = result["runs_each"]
    table = Table("figure", "cold", "warm", "warm/cold")
    labels = {
        "scheduled_to_running_s": "Scheduled to Running",
        "scheduled_to_completed_s": "Scheduled to Completed",
        "scheduled_to_pending_s": "  Scheduled to Pending (the worker's poll)",
        "pending_to_running_s": "  Pending to Running (ARM, group start/claim, import, code)",
        "running_to_completed_s": "  Running to Completed (the flow)",
        "observed_s": "submitted to final, as polled",
    }
    for phase, label in labels.items():
        row = result["figures"][phase]
        ratio = row["warm_over_cold"]
        table.add_row(
            f"{label}, median of {n}",
            _seconds(row["cold"]),
            _seconds(row["warm"]),
            "-" if ratio is None else f"{ratio:.2f}",
        )
    table.add_row("warm runs claimed from the pool", "", f"{result['warm_runs_claimed']}/{n}", "")
    bursts = result["burst"]
    if bursts:
        cold, warm = bursts.get("cold", {}), bursts.get("warm", {})
        size = cold.get("size") or warm.get("size")
        table.add_row(
            f"{size} at once: completed",
            f"{cold.get('completed')}/{size}",
            f"{warm.get('completed')}/{size} ({warm.get('claimed')} claimed, "
            f"{warm.get('claims_unread')} unread)",
            "",
        )
        table.add_row(
            f"{size} at once: Scheduled to the last Completed",
            _seconds(cold.get("last_s")),
            _seconds(warm.get("last_s")),
            "",
        )
        table.add_row(
            f"{size} at once: groups left after",
            str(cold.get("groups_left")),
            str(warm.get("groups_left")),
            "",
        )
    big = result["big_burst"]
    if big:
        size = big["size"]
        table.add_row(f"{size} cold at once, one worker: completed", f"{big['completed']}/{size}")
        table.add_row(f"{size} at once: Scheduled to the last Completed", _seconds(big["last_s"]))
        table.add_row(f"{size} at once: groups left after", str(big["groups_left"]))
        peak = big["worker_peak_memory_mib"]
        table.add_row(
            f"{size} at once: the worker's peak memory",
            "-" if peak is None else f"{peak:.0f} MiB",
        )
    return table
