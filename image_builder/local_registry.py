"""Debian's docker-registry (distribution 2.8) on a loopback port: the push target of the
benchmarks, the tests and the local demo. htpasswd auth when users are given."""

import base64
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from prefect_aci.core.errors import UserError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20, address: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((address, port)) == 0:
                return
        time.sleep(0.1)
    raise UserError(f"nothing listens on {address}:{port} after {timeout:.0f}s")


class LocalRegistry:
    def __init__(
        self,
        root: Path,
        users: dict[str, str] | None = None,
        port: int | None = None,
        address: str = "127.0.0.1",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls`` = (certificate, key) serves HTTPS; ``address`` other than loopback makes the
        Docker engine verify that certificate (it skips verification for 127.0.0.0/8)."""
        self.root = root
        self.port = port or free_port()
        self.users = users or {}
        self.address = address
        self.tls = tls
        self.process: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            import bcrypt

            (root / "htpasswd").write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                    for user, pw in self.users.items()
                )
            )
            auth = f"auth:\n  htpasswd:\n    realm: prefect-aci\n    path: {root}/htpasswd\n"
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {address}:{self.port}\n"
            + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
            + auth
        )

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @staticmethod
    def binary() -> str:
        """Debian's docker-registry (distribution 2.8), or a UserError saying how to get it."""
        found = shutil.which("docker-registry")
        if found is None:
            raise UserError(
                "docker-registry is not installed; install Debian's docker-registry package "
                "(scripts/ensure-packages.sh does, as root) or put a `docker-registry` "
                "(distribution 2.x) on PATH"
            )
        return found

    def start(self) -> "LocalRegistry":
        binary = self.binary()
        with (self.root / "registry.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(self.root / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, address=self.address)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _request(self, path: str, method: str = "GET", accept: str | None = None):
        scheme = "https" if self.tls else "http"
        url = f"{scheme}://{self.host}{path}"
        request = urllib.request.Request(url, method=method)  # noqa: S310 (http or https)
        if accept:
            request.add_header("Accept", accept)
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        return urllib.request.urlopen(request, timeout=30, context=context)  # noqa: S310

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """Docker-Content-Digest of a manifest, asked over the registry's own HTTP API."""
        try:
            with self._request(
                f"/v2/{repository}/manifests/{tag}", "HEAD", MANIFEST_TYPES
            ) as response:
                return response.headers["Docker-Content-Digest"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def manifest(self, repository: str, tag: str) -> dict:
        with self._request(f"/v2/{repository}/manifests/{tag}", accept=MANIFEST_TYPES) as resp:
            return json.loads(resp.read())

    def blob(self, repository: str, digest: str):
        """A layer as the registry serves it (compressed), to read as a stream."""
        return self._request(f"/v2/{repository}/blobs/{digest}")

    def tags(self, repository: str) -> list[str]:
        with self._request(f"/v2/{repository}/tags/list") as response:
            return json.loads(response.read())["tags"] or []

    def stored_blobs(self) -> dict[str, int]:
        """Blob digest -> bytes stored: what was uploaded, compressed, as the registry keeps it."""
        blobs = self.root / "data/docker/registry/v2/blobs"
        return {path.parent.name: path.stat().st_size for path in blobs.rglob("data")}
