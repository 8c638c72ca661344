"""`python -m prefect_aci.demo.gate HOST PORT TARGET_PORT SUBNET`: the door to a stack's Azurite on
the host's address on the stack's network.

Azurite listens on 127.0.0.1 only. This process listens on HOST:PORT (the stack's network's
gateway, which the stack's containers reach) and passes a connection through to Azurite at
127.0.0.1:TARGET_PORT (bytes, TLS included) when it comes from the stack's network (an address of
SUBNET other than HOST) or from a process of this user on this machine (the kernel's socket table
says whose a connection from this machine is). Containers of other networks and other users of
this machine are closed on at once.
"""

import asyncio
import ipaddress
import os
import socket
import sys
from pathlib import Path

TCP_TABLE = Path("/proc/net/tcp")


def _hex_address(address: str, port: int) -> str:
    """An IPv4 address and port as /proc/net/tcp writes them (the address in host byte order)."""
    packed = socket.inet_aton(address)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def owners(peer: tuple[str, int], local: tuple[str, int], table: Path = TCP_TABLE) -> set[int]:
    """The user ids of this machine's sockets connected to ``local`` from ``peer``'s port. By the
    port, not the address: a connection from this machine may reach the gate translated (a
    host's NAT rules), its port kept; several sockets on that port must all be this user's."""
    port, door = f":{peer[1]:04X}", _hex_address(*local)
    found = set()
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == door and fields[1].endswith(port):
            found.add(int(fields[7]))
    return found


def admitted(
    peer: tuple[str, int], local: tuple[str, int], subnet: str, table: Path = TCP_TABLE
) -> bool:
    """From the stack's network (not this machine's own address on it), or this user's."""
    address = ipaddress.ip_address(peer[0])
    if address in ipaddress.ip_network(subnet) and peer[0] != local[0]:
        return True
    return owners(peer, local, table) == {os.getuid()}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def handler(target_port: int, subnet: str):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        local = writer.get_extra_info("sockname")[:2]
        if not admitted(peer, local, subnet):
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    return handle


async def serve(host: str, port: int, target_port: int, subnet: str) -> None:
    server = await asyncio.start_server(handler(target_port, subnet), host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, port, target, network = sys.argv[1:5]
    asyncio.run(serve(host, int(port), int(target), network))
