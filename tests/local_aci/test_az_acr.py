"""`az acr repository list` (the real Azure CLI, from .venv-az) on a registry the local Azure
deployed: the demo deploys none, so this runs az against local ACI in the test process, over
HTTPS with the local CA, its registry's images in Debian's docker-registry, `<name>.azurecr.io`
reached through a proxy that knows only that name, signed in as the deployer
(`az login --identity`). No Docker engine."""

import hashlib
import json
import os
import subprocess

import httpx
import pytest

from image_builder.local_registry import LocalRegistry
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.local_aci.registry import REGISTRIES
from prefect_aci.local_aci.tls import make_tls
from tests.local_azure_helpers import Local, local_azure, start_local
from tests.stand_ins import AzureHostsProxy

pytestmark = pytest.mark.slow  # az in subprocesses, docker-registry beside them

AZ = PROJECT_ROOT / ".venv-az" / "bin" / "az"
REGISTRY = "prefectacitest"
LOGIN_SERVER = f"{REGISTRY}.azurecr.io"


def put_image(upstream: str, repository: str, tag: str) -> None:
    """An image (a config blob, no layers) put straight into the registry's storage, under the
    registry's name as local ACR keeps its repositories there."""
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    name = f"{REGISTRY}/{repository}"
    with httpx.Client(base_url=f"http://{upstream}") as client:
        started = client.post(f"/v2/{name}/blobs/uploads/")
        started.raise_for_status()
        # The upload's location keeps its own query (its state); the digest is added to it.
        location = httpx.URL(started.headers["location"]).copy_merge_params({"digest": digest})
        client.put(location, content=config).raise_for_status()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest,
                "size": len(config),
            },
            "layers": [],
        }
        client.put(
            f"/v2/{name}/manifests/{tag}",
            content=json.dumps(manifest),
            headers={"Content-Type": manifest["mediaType"]},
        ).raise_for_status()


@pytest.fixture
def local_acr(tmp_path):
    upstream = LocalRegistry(tmp_path / "upstream").start()
    tls = make_tls(tmp_path / "tls", names=("management.azure.com", LOGIN_SERVER))
    local = start_local(
        tmp_path, config=local_azure(registry_upstream=f"http://{upstream.host}"), tls=tls
    )
    proxy = AzureHostsProxy({f"{LOGIN_SERVER}:443": ("127.0.0.1", local.server.port)})
    try:
        yield local, upstream, tls, proxy
    finally:
        proxy.close()
        local.close()
        upstream.stop()


def az(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AZ), *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def signed_in(local: Local, tls, proxy: AzureHostsProxy, config_dir) -> dict[str, str]:
    assert AZ.exists(), "no .venv-az: `make az` makes it (make test does)"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_"))},
        **proxy.env(),
        "AZURE_CONFIG_DIR": str(config_dir),
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "REQUESTS_CA_BUNDLE": str(tls.bundle),
        "IDENTITY_ENDPOINT": f"{local.server.url}/_local/msi/token",
        "IDENTITY_HEADER": "deployer-secret-of-the-tests",
    }
    for args in (
        ("cloud", "register", "--name", "local", "--endpoint-resource-manager", local.server.url),
        ("cloud", "set", "--name", "local"),
        ("login", "--identity"),
    ):
        done = az(env, *args, "--output", "none")
        assert done.returncode == 0, done.stderr
    return env


def test_az_acr_repository_list_gives_the_deployed_registrys_repositories(local_acr, tmp_path):
    local, upstream, tls, proxy = local_acr
    local.deploy(
        {
            "type": REGISTRIES,
            "name": REGISTRY,
            "location": local.config.location,
            "sku": {"name": "Basic"},
            "properties": {},
        }
    )
    for repository in ("prefect-aci", "team/flows"):
        put_image(upstream.host, repository, "1")
    put_image(upstream.host, "prefect-aci", "2")  # a second tag: still one repository
    env = signed_in(local, tls, proxy, tmp_path / "az")
    listed = az(env, "acr", "repository", "list", "--name", REGISTRY, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == ["prefect-aci", "team/flows"]
    # az found the registry's login server through Resource Manager, then exchanged the
    # deployer's token for the registry's own (Owner holds registries/pull/read).
    assert local.of("GET", f"/providers/{REGISTRIES}/{REGISTRY}")
    exchanged = [r for r in local.at_host(LOGIN_SERVER) if r.path == "/oauth2/exchange"]
    assert exchanged


def test_az_acr_repository_list_of_a_registry_nobody_deployed_fails(local_acr, tmp_path):
    local, _upstream, tls, proxy = local_acr
    env = signed_in(local, tls, proxy, tmp_path / "az")
    missing = az(env, "acr", "repository", "list", "--name", REGISTRY, "--output", "json")
    assert missing.returncode != 0
    # Resource Manager knows no such registry, and its login server issues no challenge.
    assert (
        f"The resource with name '{REGISTRY}' and type '{REGISTRIES}' could not be found"
        in missing.stderr
    )
    assert f"Registry '{LOGIN_SERVER}' did not issue a challenge" in missing.stderr
