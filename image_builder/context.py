"""The build context, assembled in memory from docker/, the runtime wheel and the optional CA
bundle."""

import io
import tarfile
from pathlib import Path

from image_builder.wheel import runtime_wheel
from prefect_aci.core.errors import UserError

# Exactly what the Dockerfile may see: nothing else from the working tree reaches the engine.
CONTEXT_FILES = {
    "Dockerfile": 0o644,
    "entrypoint.sh": 0o755,
    "requirements.lock": 0o644,
    "build-tools.lock": 0o644,
    "trim.py": 0o644,
    "bytecode-keep.txt": 0o644,
    "check.py": 0o644,
    "report_start_failure.py": 0o644,
    "uv.sh": 0o755,
}


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    # Fixed owner and mtime: the same sources give the same context, so the build cache holds.
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def build_context(
    docker_dir: Path,
    ca_bundle: Path | None,
    files: dict[str, int] = CONTEXT_FILES,
    runtime_dir: Path | None = None,
) -> io.BytesIO:
    """A tar of ``files`` from ``docker_dir``, ``build-ca.pem`` (empty when no bundle) and, with
    ``runtime_dir``, its wheel (image_builder/wheel.py) as ``runtime/<wheel>``."""
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UserError(
            f"CA bundle {ca_bundle} does not exist; pass --ca-bundle with a PEM file, "
            "or --no-ca-bundle to use the base image's own certificates"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in files.items():
            path = docker_dir / name
            if not path.is_file():
                raise UserError(f"{path} is missing; run from a complete checkout of prefect-aci")
            _add(tar, name, path.read_bytes(), mode)
        if runtime_dir is not None:
            name, wheel = runtime_wheel(runtime_dir)
            _add(tar, f"runtime/{name}", wheel, 0o644)
        _add(tar, "build-ca.pem", ca_bundle.read_bytes() if ca_bundle else b"", 0o644)
    buffer.seek(0)
    return buffer
