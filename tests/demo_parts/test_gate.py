"""Azurite's door on the stack's network admits the stack's containers and this user's processes,
and closes on containers of other networks and on other users of this machine."""

import asyncio
import contextlib
import os
import socket
import subprocess
import threading

import pytest

from prefect_aci.demo import gate

GATEWAY = "172.29.8.1"
SUBNET = "172.29.8.0/24"
DOOR = (GATEWAY, 40001)
# A Python every user may run (the project's virtual environment may be root's only).
SYSTEM_PYTHON = "/usr/bin/python3"


def table(tmp_path, *rows: tuple[tuple[str, int], tuple[str, int], int]):
    """/proc/net/tcp with a socket per row: (its address, the address it is connected to, uid)."""
    lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"]
    for n, (local, remote, uid) in enumerate(rows):
        local_hex, remote_hex = gate._hex_address(*local), gate._hex_address(*remote)
        lines.append(f"   {n}: {local_hex} {remote_hex} 01 0:0 0:0 0 {uid} 0 1 1")
    path = tmp_path / "tcp"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_container_of_the_stacks_network_is_admitted(tmp_path):
    assert gate.admitted(("172.29.8.7", 50000), DOOR, SUBNET, table(tmp_path))


def test_a_container_of_another_network_is_not(tmp_path):
    assert not gate.admitted(("172.17.0.5", 50000), DOOR, SUBNET, table(tmp_path))


def test_this_users_process_on_this_machine_is_admitted(tmp_path):
    peer = (GATEWAY, 50000)
    assert gate.admitted(peer, DOOR, SUBNET, table(tmp_path, (peer, DOOR, os.getuid())))


def test_another_users_process_on_this_machine_is_not(tmp_path):
    peer = (GATEWAY, 50000)
    assert not gate.admitted(peer, DOOR, SUBNET, table(tmp_path, (peer, DOOR, os.getuid() + 1)))


def test_this_users_process_seen_through_the_hosts_nat_is_admitted(tmp_path):
    rows = table(tmp_path, ((GATEWAY, 50000), DOOR, os.getuid()))
    assert gate.admitted(("192.0.2.2", 50000), DOOR, SUBNET, rows)


def test_a_port_shared_with_another_users_socket_is_not_admitted(tmp_path):
    rows = table(
        tmp_path,
        ((GATEWAY, 50000), DOOR, os.getuid()),
        (("127.0.0.1", 50000), DOOR, os.getuid() + 1),
    )
    assert not gate.admitted(("192.0.2.2", 50000), DOOR, SUBNET, rows)


@pytest.fixture
def door_to_an_echo():
    """The gate on 127.0.0.1 in front of an echo server (127.0.0.1 is not the stack's network,
    so every caller is judged by whose socket it is)."""
    echo = socket.create_server(("127.0.0.1", 0))

    def serve_echo() -> None:
        while True:
            try:
                connection, _ = echo.accept()
            except OSError:
                return
            with connection:
                connection.sendall(connection.recv(64))

    threading.Thread(target=serve_echo, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    task = loop.create_task(gate.serve("127.0.0.1", port, echo.getsockname()[1], SUBNET))

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    threading.Thread(target=run, daemon=True).start()
    for _ in range(50):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        threading.Event().wait(0.1)
    yield port
    loop.call_soon_threadsafe(task.cancel)
    echo.close()


def through(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"ping")
        return connection.recv(64)


def test_the_gate_passes_this_users_bytes_through(door_to_an_echo):
    assert through(door_to_an_echo) == b"ping"


@pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="another user's process needs root to start, and a Python that user may run",
)
def test_the_gate_closes_on_another_user(door_to_an_echo):
    script = (
        "import socket, sys\n"
        f"c = socket.create_connection(('127.0.0.1', {door_to_an_echo}), timeout=5)\n"
        "try:\n"
        "    c.sendall(b'ping')\n"
        "    data = c.recv(64)\n"
        "except ConnectionError:\n"
        "    data = b''\n"
        "sys.stdout.write(repr(data))\n"
    )
    other = subprocess.run(
        [SYSTEM_PYTHON, "-c", script], user=65534, capture_output=True, text=True, timeout=30
    )
    assert other.stdout == "b''", other.stderr
