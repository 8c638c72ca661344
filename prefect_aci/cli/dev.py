"""`prefect-aci dev test|lint|lock`: for people working on prefect-aci itself."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from prefect_aci.cli.common import command_group
from prefect_aci.core.console import console
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT, SCRIPTS_DIR

BIN = Path(sys.executable).parent
# The dependency locks and what each is compiled from.
LOCKS = {
    "docker/requirements.lock": "docker/requirements.in",
    "docker/build-tools.lock": "docker/build-tools.in",
    "requirements-dev.lock": "pyproject.toml",
    "requirements-checkov.lock": "requirements-checkov.in",
    "requirements-bootstrap.lock": "requirements-bootstrap.in",
    "requirements-az.lock": "requirements-az.in",
}

app = command_group("For people working on prefect-aci itself: the test suite, linters, locks.")


def _run(command: list[str], **kwargs) -> int:
    console.print(f"[dim]$ {' '.join(command)}[/]", highlight=False)
    return subprocess.run(command, cwd=PROJECT_ROOT, **kwargs).returncode


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise UserError(f"{name} is not in {BIN}; run `make setup`")
    return str(path)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def test(
    ctx: typer.Context,
    fast: Annotated[
        bool,
        typer.Option(
            help="Only the checks that need no image, engine or server (parsers, validators, "
            "template rendering, settings): seconds, not minutes."
        ),
    ] = False,
) -> None:
    """Run the test suite (extra arguments go to pytest). The whole suite needs a Docker engine
    and Debian's docker-registry, debootstrap, docker-compose and chromium: on Debian as root they
    are installed and the engine started when missing (scripts/ensure-*.sh)."""
    if not fast:
        for script in ("ensure-packages.sh", "ensure-docker.sh"):
            if _run(["bash", str(SCRIPTS_DIR / script)]) != 0:
                raise UserError(f"scripts/{script} failed; see the line above")
    marks = ["-m", "not slow"] if fast else []
    # The slowest tests, named at the end: the suite has a time budget in CI (docs/development.md).
    durations = [] if fast else ["--durations=15"]
    code = _run([sys.executable, "-m", "pytest", *marks, *durations, *ctx.args])
    if code != 0:
        raise UserError("tests failed" if code == 1 else f"pytest exited {code}", exit_code=code)


@app.command()
def lint() -> None:
    """ruff (check and format), the import contracts (lint-imports: the floors in pyproject.toml),
    hadolint, shellcheck and actionlint; all run, then the failures are named."""
    scripts = sorted(str(p.relative_to(PROJECT_ROOT)) for p in SCRIPTS_DIR.glob("*.sh"))
    checks = {
        "ruff check": [_tool("ruff"), "check", "."],
        "ruff format": [_tool("ruff"), "format", "--check", "."],
        "import contracts": [_tool("lint-imports")],
        "hadolint": [
            _tool("hadolint"),
            "docker/Dockerfile",
            "docker/child/Dockerfile",
            "docker/postgres/Dockerfile",
            "bench/Dockerfile",
        ],
        "shellcheck": [
            _tool("shellcheck"),
            "docker/entrypoint.sh",
            "docker/uv.sh",
            "docker/postgres/start.sh",
            ".ci/run",
            *scripts,
        ],
        "actionlint": [_tool("actionlint"), *map(str, Path(".github/workflows").glob("*.yml"))],
    }
    failed = [name for name, command in checks.items() if _run(command) != 0]
    if failed:
        raise UserError(f"lint failed: {', '.join(failed)}")
    console.print("[bold green]lint clean[/]")


@app.command()
def lock() -> None:
    """Re-resolve every lock file with uv (hashes, all platforms, Python 3.11 and newer)."""
    base = [
        _tool("uv"),
        "pip",
        "compile",
        "--quiet",
        "--no-config",
        "--index-url",
        os.environ.get("UV_INDEX_URL", "https://pypi.org/simple"),
        "--universal",
        "--python-version",
        "3.11",
        "--generate-hashes",
        "--custom-compile-command",
        "make lock",
    ]
    for output, source in LOCKS.items():
        extra = ["--extra", "dev"] if source == "pyproject.toml" else []
        if _run([*base, *extra, source, "-o", output]) != 0:
            raise UserError(f"uv could not resolve {source}; see the lines above")
