"""`python -m prefect_aci.local_aci.server FOLDER SCHEMAS`: the local ACI's endpoints, run in a
container of the stack (see prefect_aci.demo.stack). FOLDER holds config.json, the TLS
certificate and key, the token signing key and the deployer's secret; SCHEMAS is arm/schemas.
HTTPS on 443 (Resource Manager, Container Instances, Key Vault, the stack's door), HTTP on 80
(IMDS, asked by the IMDS router for the callers at 169.254.169.254), and on PROXY_PORT the proxy
that takes clients on the host to 443 at Azure's names (prefect_aci.local_aci.proxy)."""

import asyncio
import logging
import sys
from pathlib import Path

import docker
import uvicorn
from fastapi import Request
from fastapi.responses import JSONResponse

from prefect_aci.local_aci import proxy
from prefect_aci.local_aci.app import LocalAci, https_app, imds_app
from prefect_aci.local_aci.config import read_config
from prefect_aci.local_aci.groups import Groups
from prefect_aci.local_aci.resource_manager import ResourceManager
from prefect_aci.local_aci.resources import ResourceStore
from prefect_aci.local_aci.schema import ResourceSchemas
from prefect_aci.local_aci.standby import StandbyPools
from prefect_aci.local_aci.storage import blob_containers
from prefect_aci.local_aci.tokens import TokenIssuer

CONFIG = "config.json"
CERTIFICATE = "tls-cert.pem"
CERTIFICATE_KEY = "tls-key.pem"
SIGNING_KEY = "signing-key.pem"
DEPLOYER_SECRET = "deployer-secret"  # noqa: S105 (a file name)
# The secret with which the IMDS router vouches for a caller (prefect_aci.local_aci.imds_router).
ROUTER_SECRET = "imds-router-secret"  # noqa: S105 (a file name)
# Where the proxy to Azure's names listens in the container (the stack publishes it on 127.0.0.1).
PROXY_PORT = 3128


def build(folder: Path, schemas: Path) -> LocalAci:
    config = read_config(folder / CONFIG)
    store = ResourceStore()
    if config.blob_endpoint:
        # Azurite serves the stack's certificate, which the stand-in serves too.
        store.listeners.append(
            blob_containers(
                config.blob_endpoint, str(folder / CERTIFICATE), config.blob_account_key
            )
        )
    groups = Groups(docker.from_env(timeout=300), config, store)
    arm = ResourceManager(
        config.subscription_id,
        groups,
        ResourceSchemas(schemas),
        tenant_id=config.tenant_id,
        store=store,
        blob_endpoint=config.blob_endpoint,
    )
    issuer = TokenIssuer(folder / SIGNING_KEY, config.tenant_id)
    standby = StandbyPools(config, groups, store).start()
    aci = LocalAci(
        config, groups, arm, issuer, (folder / DEPLOYER_SECRET).read_text().strip(), standby
    )
    router_secret = folder / ROUTER_SECRET
    if router_secret.is_file():
        aci.router_secret = router_secret.read_text().strip()
    return aci


def _with_azure_errors(app):
    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("local-aci").exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"error": {"code": "InternalServerError", "message": type(exc).__name__}}, 500
        )

    return app


async def serve(folder: Path, schemas: Path) -> None:
    aci = build(folder, schemas)
    https = uvicorn.Server(
        uvicorn.Config(
            _with_azure_errors(https_app(aci)),
            host="0.0.0.0",  # noqa: S104 (inside the container, on the stack's networks)
            port=443,
            ssl_certfile=str(folder / CERTIFICATE),
            ssl_keyfile=str(folder / CERTIFICATE_KEY),
            log_level="warning",
        )
    )
    imds = uvicorn.Server(
        uvicorn.Config(
            _with_azure_errors(imds_app(aci)),
            host="0.0.0.0",  # noqa: S104 (inside the container, on the stack's networks)
            port=80,
            log_level="warning",
        )
    )
    # Inside the container, on the stack's networks; the stack publishes it on 127.0.0.1 only.
    tunnels = await proxy.serve("0.0.0.0", PROXY_PORT, ("127.0.0.1", 443))  # noqa: S104
    async with tunnels:
        await asyncio.gather(https.serve(), imds.serve(), tunnels.serve_forever())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(Path(sys.argv[1]), Path(sys.argv[2])))
