"""Revision and commit time of the checkout, for labels that say which sources made the image."""

import subprocess
from datetime import UTC, datetime
from pathlib import Path


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def revision(root: Path) -> str:
    """HEAD's sha, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    sha = _git(root, "rev-parse", "HEAD")
    if not sha:
        return "unknown"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def created(root: Path) -> str:
    """HEAD's commit time (not the wall clock), so rebuilding a commit gives the same labels."""
    stamp = _git(root, "log", "-1", "--format=%ct")
    moment = datetime.fromtimestamp(int(stamp) if stamp else 0, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
