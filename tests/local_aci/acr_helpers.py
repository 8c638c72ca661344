"""Local ACR for tests: the local ACI's HTTPS app (prefect_aci.local_aci.app.https_app) served by
uvicorn on a loopback port with the local CA, two deployed registries in its store, Debian's
docker-registry as their upstream, and a CONNECT proxy that takes `<name>.azurecr.io:443` there,
so that azure-containerregistry, azure-identity and our own ACR code reach the registries by
their Azure names, over HTTPS, unmodified."""

import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl

import uvicorn
from azure.containerregistry import ContainerRegistryClient
from azure.core.credentials import AccessToken

from image_builder.local_registry import LocalRegistry, free_port
from prefect_aci.local_aci.app import LocalAci, https_app
from prefect_aci.local_aci.authorization import ACR_DELETE, ACR_PULL, ACR_PUSH, assignment
from prefect_aci.local_aci.config import Identity, LocalAzure, Wiring
from prefect_aci.local_aci.registry import REGISTRIES
from prefect_aci.local_aci.resources import Recorded, ResourceStore
from prefect_aci.local_aci.tls import make_tls
from prefect_aci.local_aci.tokens import TokenIssuer, make_signing_key
from tests.stand_ins import AzureHostsProxy

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
GROUP = "prefect-aci-rg"
GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"
REGISTRY = "prefectacitest"
OTHER_REGISTRY = "otherteam"
LOGIN_SERVER = f"{REGISTRY}.azurecr.io"
OTHER_LOGIN_SERVER = f"{OTHER_REGISTRY}.azurecr.io"
UNKNOWN_LOGIN_SERVER = "unknown.azurecr.io"  # answered by the stand-in, deployed by nobody
DEPLOYER_SECRET = "local-identity-header"


def registry_id(name: str) -> str:
    return f"{GROUP_ID}/providers/{REGISTRIES}/{name}"


def identity(name: str, number: int) -> Identity:
    return Identity(
        name=name,
        resource_id=f"{GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        client_id=f"00000000-0000-4000-8000-{number:012d}",
        principal_id=f"00000000-0000-4000-9000-{number:012d}",
    )


# Who may do what: the pusher (the stack's deployer, behind the door's identity endpoint) pushes
# to both registries; the puller only pulls; the cleaner pushes and deletes; nobody has no role.
PUSHER = identity("pusher", 1)
PULLER = identity("puller", 2)
CLEANER = identity("cleaner", 3)
NOBODY = identity("nobody", 4)
ROLES = [
    (PUSHER, ACR_PUSH, registry_id(REGISTRY)),
    (PUSHER, ACR_PUSH, registry_id(OTHER_REGISTRY)),
    (PULLER, ACR_PULL, registry_id(REGISTRY)),
    (CLEANER, ACR_PUSH, registry_id(REGISTRY)),
    (CLEANER, ACR_DELETE, registry_id(REGISTRY)),
]


@dataclass
class IssuedCredential:
    """azure-core's TokenCredential over the local Azure's token issuer: the tokens a managed
    identity of this principal gets (IMDS's own route is the IMDS tests' subject)."""

    issuer: TokenIssuer
    who: Identity

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        issued = self.issuer.issue(
            scopes[0].removesuffix("/.default"),
            self.who.client_id,
            self.who.principal_id,
            self.who.resource_id,
        )
        return AccessToken(issued.token, issued.expires_on)


def local_azure(upstream: str | None) -> LocalAzure:
    return LocalAzure(
        tenant_id=TENANT,
        subscription_id=SUBSCRIPTION,
        resource_group=GROUP,
        identities=[PUSHER, PULLER, CLEANER, NOBODY],
        role_assignments=[assignment(w.principal_id, role, scope) for w, role, scope in ROLES],
        admin_principal_id=PUSHER.principal_id,
        wiring=Wiring(
            stack_id="test",
            network="none",
            imds_network="none",
            extra_hosts={},
            ca_bundle_host_path="/dev/null",
        ),
        registry_upstream=upstream,
    )


def deployed_registries() -> ResourceStore:
    """The store as the local Resource Manager leaves it after deploying two registries; the
    other one lets anyone pull (`anonymousPullEnabled`, a Standard registry's option)."""
    store = ResourceStore()
    for name, sku, anonymous in ((REGISTRY, "Basic", False), (OTHER_REGISTRY, "Standard", True)):
        body = {
            "id": registry_id(name),
            "name": name,
            "type": REGISTRIES,
            "location": "westeurope",
            "sku": {"name": sku, "tier": sku},
            "properties": {
                "loginServer": f"{name}.azurecr.io",
                "adminUserEnabled": False,
                "anonymousPullEnabled": anonymous,
            },
        }
        store.put(Recorded(registry_id(name), REGISTRIES, body, "test"))
    return store


@dataclass(frozen=True)
class Seen:
    """A request the app answered: its form fields when it sent a form (ACR's token requests)."""

    method: str
    host: str
    path: str
    query: dict[str, str]
    form: dict[str, str]


class Recording:
    """An ASGI wrapper that notes each request the app answers (not the blobs' bytes)."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_form = headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded")
        form: dict[str, str] = {}  # filled as the app reads the body, before it answers
        chunks: list[bytes] = []
        # Noted before the app answers: once a client has its answer, the request is in `seen`.
        self.seen.append(
            Seen(
                scope["method"],
                headers.get(b"host", b"").decode().split(":")[0],
                scope["path"],
                dict(parse_qsl(scope["query_string"].decode())),
                form,
            )
        )

        async def noted():
            message = await receive()
            if is_form and message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    form.update(parse_qsl(b"".join(chunks).decode(errors="replace")))
            return message

        await self.app(scope, noted, send)


def push_image(registry: ContainerRegistryClient, repository: str, tag: str, seed: str) -> str:
    """An image (a config and one layer of ``seed``) pushed with the SDK; its manifest digest."""
    layer = seed.encode() * 100
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z"}
    ).encode()
    layer_digest, layer_size = registry.upload_blob(repository, io.BytesIO(layer))
    config_digest, config_size = registry.upload_blob(repository, io.BytesIO(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    return registry.set_manifest(repository, manifest, tag=tag)


class LocalAcr:
    def __init__(self, folder: Path) -> None:
        self.upstream = LocalRegistry(folder / "upstream").start()
        self.tls = make_tls(
            folder / "tls", names=(LOGIN_SERVER, OTHER_LOGIN_SERVER, UNKNOWN_LOGIN_SERVER)
        )
        make_signing_key(folder / "signing-key.pem")
        self.issuer = TokenIssuer(folder / "signing-key.pem", TENANT)
        self.config = local_azure(f"http://{self.upstream.host}")
        self.store = deployed_registries()
        aci = LocalAci(
            self.config, None, SimpleNamespace(store=self.store), self.issuer, DEPLOYER_SECRET
        )
        self.port = free_port()
        self.recording = Recording(https_app(aci))
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.recording,
                host="127.0.0.1",
                port=self.port,
                ssl_certfile=str(self.tls.certificate),
                ssl_keyfile=str(self.tls.key),
                log_level="warning",
                # The SDKs' kept-alive connections through the proxy would hold a shutdown.
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.close()
                raise RuntimeError("the local ACI's HTTPS app did not start")
            time.sleep(0.02)
        self.proxy = AzureHostsProxy(
            {
                f"{server}:443": ("127.0.0.1", self.port)
                for server in (LOGIN_SERVER, OTHER_LOGIN_SERVER, UNKNOWN_LOGIN_SERVER)
            }
        )

    @property
    def seen(self) -> list[Seen]:
        return self.recording.seen

    def client(self, who: Identity, server: str = LOGIN_SERVER) -> ContainerRegistryClient:
        """azure-containerregistry's client for ``server`` as ``who``."""
        return ContainerRegistryClient(
            f"https://{server}",
            self.credential(who),
            audience="https://containerregistry.azure.net",
        )

    def credential(self, who: Identity) -> IssuedCredential:
        return IssuedCredential(self.issuer, who)

    def env(self) -> dict[str, str]:
        """The SDKs reach `<name>.azurecr.io` through the proxy and trust the local CA; the
        App Service identity variables give azure-identity the deployer (PUSHER)."""
        return {
            **self.proxy.env(),
            **self.tls.env(),
            "IDENTITY_ENDPOINT": f"https://127.0.0.1:{self.port}/_local/msi/token",
            "IDENTITY_HEADER": DEPLOYER_SECRET,
        }

    def close(self) -> None:
        if getattr(self, "proxy", None):
            self.proxy.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.upstream.stop()
