"""IMDS at its real address, 169.254.169.254, for every local ACI stack on this machine.

Containers reach IMDS at one fixed address, and Docker lets only one network hold that address.
So one link-local network (`prefect-aci-imds`, no route on the host: the host's own metadata
service, on a cloud VM, stays reachable) serves all stacks, and this router answers at
169.254.169.254: it finds the calling container by its address, then asks the stand-in of that
container's stack, which issues a token for the caller's own identities only.

The stand-in takes the router's word for who called only with its stack's router secret (a file
of the stack, mode 0600, which the stack also gives the stand-in's container as ROUTER_SECRET_ENV):
the router, which holds the Docker socket, reads it from there. Another container on the shared
network cannot pass for the router by its address alone.
"""

import sys

import docker
import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from prefect_aci.local_aci.config import LABEL

NETWORK = "prefect-aci-imds"
SUBNET = "169.254.169.0/24"
ADDRESS = "169.254.169.254"
ROUTER_NAME = "prefect-aci-imds-router"
CALLER_HEADER = "x-local-aci-caller"
ROUTER_SECRET_HEADER = "x-local-aci-router-secret"  # noqa: S105 (a header's name)
ROUTER_SECRET_ENV = "LOCAL_ACI_ROUTER_SECRET"  # noqa: S105 (a variable's name)
# What the router says to the stand-ins, as a label of its container: a stack replaces a router
# that speaks an older version (one that sends no router secret) when it starts.
PROTOCOL = "2"


def _address_on(container, network: str) -> str:
    return container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress", "")


def _router_secret(container) -> str:
    for variable in container.attrs.get("Config", {}).get("Env") or []:
        name, _, value = variable.partition("=")
        if name == ROUTER_SECRET_ENV:
            return value
    return ""


def stand_in_for(client: docker.DockerClient, caller: str) -> tuple[str, str] | None:
    """Address, on the IMDS network, of the stand-in of the stack the caller belongs to, and
    the secret with which that stand-in takes the router's word."""
    members = client.containers.list(filters={"network": NETWORK})
    stack = next(
        (c.labels.get(f"{LABEL}.stack") for c in members if _address_on(c, NETWORK) == caller),
        None,
    )
    if not stack:
        return None
    for container in members:
        labels = container.labels
        if labels.get(f"{LABEL}.stack") == stack and labels.get(f"{LABEL}.role") == "stand-in":
            return _address_on(container, NETWORK), _router_secret(container)
    return None


def app(client: docker.DockerClient) -> FastAPI:
    router = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @router.api_route("/{path:path}", methods=["GET"])
    async def forward(request: Request, path: str) -> Response:
        caller = request.client.host if request.client else ""
        found = await run_in_threadpool(stand_in_for, client, caller)
        if found is None:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "Identity not found"}, 400
            )
        target, secret = found
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(
                f"http://{target}/{path}",
                params=request.query_params,
                headers={
                    "metadata": request.headers.get("metadata", ""),
                    CALLER_HEADER: caller,
                    ROUTER_SECRET_HEADER: secret,
                },
            )
        return Response(
            answer.content, answer.status_code, media_type=answer.headers.get("content-type")
        )

    return router


if __name__ == "__main__":
    uvicorn.run(
        app(docker.from_env()),
        host=ADDRESS if len(sys.argv) < 2 else sys.argv[1],
        port=80,
        log_level="warning",
    )
