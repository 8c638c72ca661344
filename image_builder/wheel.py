"""runtime/ (prefect-aci's code inside the image) packed as a wheel, byte for byte the same from
the same sources: the image installs it with uv, and no build backend is fetched to make it."""

import base64
import hashlib
import io
import re
import tomllib
import zipfile
from pathlib import Path

from prefect_aci.core.errors import UserError

# The earliest date a zip can hold: fixed, so the wheel (and the build cache) depends on the
# sources alone.
EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()},{len(data)}"


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project.get('description', '')}",
    ]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _entry_points(project: dict) -> str:
    sections = []
    for group, points in sorted(project.get("entry-points", {}).items()):
        body = "".join(f"{name} = {value}\n" for name, value in sorted(points.items()))
        sections.append(f"[{group}]\n{body}")
    return "\n".join(sections)


def runtime_wheel(runtime_dir: Path) -> tuple[str, bytes]:
    """The wheel's file name and bytes, from ``runtime_dir``'s pyproject.toml and its package."""
    pyproject = runtime_dir / "pyproject.toml"
    if not pyproject.is_file():
        raise UserError(f"{pyproject} is missing; run from a complete checkout of prefect-aci")
    project = tomllib.loads(pyproject.read_text())["project"]
    distribution = re.sub(r"[-_.]+", "_", project["name"]).lower()
    package = runtime_dir / distribution
    sources = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    if not sources:
        raise UserError(f"{package} holds no Python modules; run from a complete checkout")
    dist_info = f"{distribution}-{project['version']}.dist-info"
    files = [(p.relative_to(runtime_dir).as_posix(), p.read_bytes()) for p in sources]
    files += [
        (f"{dist_info}/METADATA", _metadata(project).encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: prefect-aci\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", _entry_points(project).encode()),
    ]
    record = "".join(f"{name},{_record_hash(data)}\n" for name, data in files)
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return f"{distribution}-{project['version']}-py3-none-any.whl", buffer.getvalue()
