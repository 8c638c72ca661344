"""Tracing what the image's Python loads (tests/image/import_trace.py), for the bytecode trim."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from prefect_aci.core.paths import PROJECT_ROOT

TRACER = Path(__file__).with_name("import_trace.py")
SITE = "/opt/prefect/venv/lib/python"  # + X.Y/site-packages/
KEEP_LIST = PROJECT_ROOT / "docker" / "bytecode-keep.txt"


def module_of(path: str) -> str | None:
    """The module a site-packages .py or .pyc file is, else None."""
    if not path.startswith(SITE) or "/site-packages/" not in path:
        return None
    relative = path.split("/site-packages/", 1)[1]
    if "/__pycache__/" in relative and relative.endswith(".pyc"):
        folder, name = relative.rsplit("/__pycache__/", 1)
        relative = f"{folder}/{name.split('.', 1)[0]}.py"
    elif relative.startswith("__pycache__/"):
        relative = relative.removeprefix("__pycache__/").split(".", 1)[0] + ".py"
    if not relative.endswith(".py"):
        return None
    module = relative.removesuffix(".py").replace("/", ".")
    return module.removesuffix(".__init__")


@dataclass
class Trace:
    folder: Path

    def container_kwargs(self, environment: dict[str, str] | None = None) -> dict:
        """What a containers.run needs to be traced: the tracer as sitecustomize, the folder."""
        return {
            "volumes": {
                str(TRACER): {"bind": "/opt/prefect-aci-trace/sitecustomize.py", "mode": "ro"},
                str(self.folder): {"bind": "/opt/prefect-aci-trace/out", "mode": "rw"},
            },
            "environment": {
                **(environment or {}),
                "PYTHONPATH": "/opt/prefect-aci-trace",
                "TRACE_DIR": "/opt/prefect-aci-trace/out",
            },
        }

    def runs(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.folder.glob("*.json"))]

    def loaded_modules(self) -> set[str]:
        return {m for run in self.runs() for p in run["opened"] if (m := module_of(p))}

    def compiled_modules(self) -> set[str]:
        """Modules Python compiled from source because it had no bytecode for them. A module
        whose .pyc was read may still show a compile event: anyio's lazy importer parses its
        own source into an AST (compile(..., PyCF_ONLY_AST)), which the audit hook cannot tell
        from compiling bytecode."""
        found = set()
        for run in self.runs():
            from_bytecode = {module_of(p) for p in run["opened"] if p.endswith(".pyc")}
            found |= {m for p in run["compiled"] if (m := module_of(p)) and m not in from_bytecode}
        return found


_ALL_TRACES: list[Trace] = []


@pytest.fixture
def trace(tmp_path_factory) -> Trace:
    """A fresh trace folder, writable by the image's user."""
    folder = tmp_path_factory.mktemp("trace")
    folder.chmod(0o777)
    found = Trace(folder)
    _ALL_TRACES.append(found)
    return found


def pytest_sessionfinish(session, exitstatus) -> None:
    """PREFECT_ACI_WRITE_BYTECODE_KEEP=1: the union of every traced run becomes the keep list
    (run tests/image with it after the lock changes, on an image built with --keep bytecode or
    not: both record what was loaded)."""
    if not os.environ.get("PREFECT_ACI_WRITE_BYTECODE_KEEP") or not _ALL_TRACES:
        return
    modules = set().union(*(t.loaded_modules() for t in _ALL_TRACES))
    header = [line for line in KEEP_LIST.read_text().splitlines() if line.startswith("#")]
    KEEP_LIST.write_text("\n".join([*header, *sorted(modules)]) + "\n")
