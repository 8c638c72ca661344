"""An HTTP proxy (CONNECT only) that takes clients on this machine to the stand-in at Azure's own
host names: `<vault>.vault.azure.net`, `graph.microsoft.com` and `management.azure.com` resolve
to the stand-in inside the stack's containers (host entries), but nowhere on the machine itself,
and a client such as the Azure CLI builds a vault's URL from its name. With HTTPS_PROXY at this
proxy, such a client opens a tunnel to the stand-in's HTTPS port and speaks TLS through it to the
stand-in, which answers with the stack's certificate for that name, as it does for containers.

It tunnels only to port 443 of the names the stand-in answers for (SERVED) and refuses anything
else with 403, so nothing sent through it reaches the real Azure or any other host.
"""

import asyncio
import re

# The host names the stand-in serves (its certificate's names), port 443 only.
SERVED = re.compile(
    r"^(?:management\.azure\.com|graph\.microsoft\.com|[a-z0-9-]{3,24}\.vault\.azure\.net):443$",
    re.IGNORECASE,
)
# The longest request head a client sends before the tunnel (the CONNECT line and its headers).
HEAD_LIMIT = 8192


async def _refuse(writer: asyncio.StreamWriter, status: str, reason: str) -> None:
    body = reason.encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.close()


def handler(target: tuple[str, int]):
    """A connection handler that tunnels a CONNECT for a SERVED name to ``target`` (the
    stand-in's HTTPS port)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method, _, rest = head.split(b"\r\n", 1)[0].decode(errors="replace").partition(" ")
        authority = rest.split(" ", 1)[0]
        if method.upper() != "CONNECT" or not SERVED.match(authority):
            await _refuse(
                writer,
                "403 Forbidden",
                f"this proxy tunnels only to the local Azure's names ({SERVED.pattern}); "
                f"not {method} {authority}",
            )
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError as exc:
            await _refuse(writer, "502 Bad Gateway", f"the stand-in did not answer: {exc}")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    return handle


async def serve(host: str, port: int, target: tuple[str, int]) -> asyncio.Server:
    return await asyncio.start_server(handler(target), host, port, limit=HEAD_LIMIT)
