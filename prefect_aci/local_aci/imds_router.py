"""IMDS at its real address, 169.254.169.254, for every local ACI stack on this machine.

Containers reach IMDS at one fixed address, and Docker lets only one network hold that address.
So one link-local network (`prefect-aci-imds`, no route on the host: the host's own metadata
service, on a cloud VM, stays reachable) serves all stacks, and this router answers at
169.254.169.254: it finds the calling container by its address, then asks the stand-in of that
container's stack, which issues a token for the caller's own identities only.
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


def _address_on(container, network: str) -> str:
    return container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress", "")


def stand_in_for(client: docker.DockerClient, caller: str) -> str | None:
    """Address, on the IMDS network, of the stand-in of the stack the caller belongs to."""
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
            return _address_on(container, NETWORK)
    return None


def app(client: docker.DockerClient) -> FastAPI:
    router = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @router.api_route("/{path:path}", methods=["GET"])
    async def forward(request: Request, path: str) -> Response:
        caller = request.client.host if request.client else ""
        target = await run_in_threadpool(stand_in_for, client, caller)
        if target is None:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "Identity not found"}, 400
            )
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(
                f"http://{target}/{path}",
                params=request.query_params,
                headers={
                    "metadata": request.headers.get("metadata", ""),
                    CALLER_HEADER: caller,
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
