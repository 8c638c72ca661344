"""On the running stack: the Prefect server keeps its state in the stack's PostgreSQL, which lets
in the server alone, with a password nobody sees: not the server's settings, its container's
configuration, `up`'s output or the state folder; the database's own copy is gone once used."""

import json

from prefect_aci.demo import database
from prefect_aci.demo.state import database_container, server_container, stand_in_container

# asyncpg, as the Prefect server uses it, from another container of the stack's network.
CONNECT = """
import asyncio, sys, asyncpg
async def main():
    await asyncpg.connect(host=sys.argv[1], port=5432, user="prefect", database="postgres",
                          password=sys.argv[2], timeout=10)
try:
    asyncio.run(main())
    print("connected")
except Exception as exc:
    print(f"refused: {exc}")
"""


def sql(container, query: str) -> str:
    answer = container.exec_run(["psql", "--username=prefect", "--dbname=postgres", "-tAc", query])
    assert answer.exit_code == 0, answer.output
    return answer.output.decode().strip()


def test_the_prefect_server_keeps_its_runs_in_the_stacks_postgresql(stack, docker_client):
    db = docker_client.containers.get(database_container(stack.folder))
    run_id = stack.state.flow_run_id
    found = sql(db, f"select count(*) from flow_run where id = '{run_id}'")  # noqa: S608 (a uuid)
    assert found == "1"
    # On the stack's network alone, at its address, and no port on this machine.
    assert list(db.attrs["NetworkSettings"]["Networks"]) == [stack.state.network]
    address = db.attrs["NetworkSettings"]["Networks"][stack.state.network]["IPAddress"]
    assert address == stack.state.database_address
    assert not db.attrs["HostConfig"]["PortBindings"]
    assert not any(db.attrs["NetworkSettings"]["Ports"].values())
    server = docker_client.containers.get(server_container(stack.folder))
    env = dict(item.split("=", 1) for item in server.attrs["Config"]["Env"])
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == (
        f"postgresql+asyncpg://prefect@{stack.state.database_address}:5432/postgres"
    )


def test_the_database_lets_in_the_server_alone_and_its_password_is_nowhere_else(
    stack, docker_client
):
    server = docker_client.containers.get(server_container(stack.folder))
    db = docker_client.containers.get(database_container(stack.folder))
    owner = server.exec_run(["stat", "-c", "%a %u", database.PGPASS_FILE]).output.decode()
    user = server.attrs["Config"]["User"].split(":")[0]
    assert owner.split() == ["600", user]
    line = server.exec_run(["cat", database.PGPASS_FILE]).output.decode().strip()
    password = line.rsplit(":", 1)[1]
    assert len(password) >= 32
    assert db.exec_run(["test", "-e", database.SECRET_FILE]).exit_code == 1
    assert password not in json.dumps(server.attrs) + json.dumps(db.attrs)
    assert password not in stack.up.stdout + stack.up.stderr
    assert password not in db.logs().decode(errors="replace")
    for path in stack.folder.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert password.encode() not in path.read_bytes(), path
    # With the password but from another address of the stack's network: refused.
    stand_in = docker_client.containers.get(stand_in_container(stack.folder))
    probe = stand_in.exec_run(
        ["python", "-c", CONNECT, stack.state.database_address, password]
    ).output.decode()
    assert "refused" in probe and "no pg_hba.conf entry" in probe, probe
