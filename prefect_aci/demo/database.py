"""The local stack's Prefect database: PostgreSQL from Debian (docker/postgres/), in a
container on the stack's network, in place of the server's SQLite file.

Prefect's server on SQLite answers 503 ("database is locked") when dozens of flow runs report at
once, and Prefect's docs advise PostgreSQL for such loads; 50 runs at once is what the bench asks
of the stack. The database listens on the stack's network alone (no port on this machine) and lets
in the Prefect server only, from its address, with a password made for this stack. The password
goes into each container as a file readable by that container's user alone (never an environment
variable, a log line, an image layer or a file of the state folder), and the database's own copy
is deleted once the cluster holds it.
"""

import io
import tarfile
import time

import docker
from docker.errors import APIError
from rich.console import Console

from image_builder.build import stream_build
from image_builder.context import build_context
from image_builder.settings import ImageSettings, detect_ca_bundle
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.settings import load

DOCKER_DIR = PROJECT_ROOT / "docker" / "postgres"
CONTEXT_FILES = {"Dockerfile": 0o644, "start.sh": 0o755}
# Local only: built from the base of the project's images on each `up` (from cache), never pushed.
IMAGE_REPOSITORY = "prefect-aci-demo-postgres"
IMAGE_TAG = "latest"
PORT = 5432
USER = "prefect"
DATABASE = "postgres"
# Where start.sh reads the password (the image's user owns it: `container_uid`).
SECRET_FILE = "/run/prefect-aci/password"  # noqa: S105 (a path)
# Where the Prefect server's asyncpg reads the password (PGPASSFILE).
PGPASS_FILE = "/run/prefect-aci/pgpass"
READY_TIMEOUT_SECONDS = 60.0


def build_image(client: docker.DockerClient, base_image: str, console: Console) -> str:
    """The database image on ``base_image`` (the project's images' base): its id."""
    ca_bundle = detect_ca_bundle(load(ImageSettings).ca_bundle)
    context = build_context(DOCKER_DIR, ca_bundle, files=CONTEXT_FILES)
    try:
        image_id = stream_build(client, context, {"BASE_IMAGE": base_image}, False, console)
    except UserError as error:
        raise UserError(
            f"the database image did not build on {base_image}: {error}; it installs Debian's "
            "postgresql with apt, so the base's Debian mirror must answer (set "
            "PREFECT_ACI_CA_BUNDLE when a proxy intercepts TLS)"
        ) from None
    client.images.get(image_id).tag(IMAGE_REPOSITORY, IMAGE_TAG)
    return image_id


def secret_file(path: str, content: str, uid: int) -> bytes:
    """A tar (for put_archive at /) of the file ``path`` in a folder of its own, both owned by
    ``uid`` and open to it alone (0700, 0600); the folder's parent must exist in the image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        name = path.strip("/")
        folder = tarfile.TarInfo(name.rsplit("/", 1)[0])
        folder.type, folder.mode, folder.uid, folder.gid = tarfile.DIRTYPE, 0o700, uid, uid
        tar.addfile(folder)
        data = content.encode()
        member = tarfile.TarInfo(name)
        member.size, member.mode, member.uid, member.gid = len(data), 0o600, uid, uid
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def server_settings(address: str) -> dict[str, str]:
    """The Prefect server's settings for the database at ``address``: a URL with no password in
    it, and the file asyncpg reads the password from (`give_secret` puts it there)."""
    return {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
            f"postgresql+asyncpg://{USER}@{address}:{PORT}/{DATABASE}"
        ),
        "PGPASSFILE": PGPASS_FILE,
    }


def pgpass(address: str, password: str) -> str:
    return f"{address}:{PORT}:{DATABASE}:{USER}:{password}\n"


def container_uid(client: docker.DockerClient, image_id: str) -> int:
    """The numeric user an image runs as (`USER 1000:1000` in our Dockerfile)."""
    user = (client.images.get(image_id).attrs.get("Config") or {}).get("User") or "0"
    uid = user.split(":", 1)[0]
    if not uid.isdigit():
        raise UserError(
            f"image {image_id[:19]} runs as user {user!r}, not a numeric uid; rebuild it"
        )
    return int(uid)


def give_secret(container, path: str, content: str, uid: int) -> None:
    """Put ``content`` at ``path`` in the created (not yet started) ``container``, for ``uid``."""
    try:
        container.put_archive("/", secret_file(path, content, uid))
    except APIError as exc:
        raise UserError(f"could not put a file in {container.name}: {exc.explanation}") from None


def wait_ready(container, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Until PostgreSQL takes connections on its socket; a UserError with its log's last lines
    if it stops or does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            break
        try:
            check = ["pg_isready", "--quiet", "--username", USER, "--dbname", DATABASE]
            ready = container.exec_run(check).exit_code == 0
        except APIError:  # it stopped between the two calls: the next reload says so
            ready = False
        if ready:
            return
        time.sleep(0.5)
    tail = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
    raise UserError(
        f"PostgreSQL in {container.name} did not take connections within {timeout:.0f}s "
        f"({container.status}): {tail or 'no output'}; see `docker logs {container.name}`"
    )
