"""The database password's way into a container: one file in a folder of its own, both open to
the container's user alone; the folder's parent (an image's /run) is left as it is."""

import io
import tarfile

from prefect_aci.demo import database


def test_a_secret_file_is_its_users_alone_and_leaves_the_parent_folder_alone():
    data = io.BytesIO(database.secret_file("/run/x/pw", "s3cret", 70))
    with tarfile.open(fileobj=data) as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert list(members) == ["run/x", "run/x/pw"]
        folder, file = members["run/x"], members["run/x/pw"]
        assert folder.isdir() and (folder.mode, folder.uid, folder.gid) == (0o700, 70, 70)
        assert file.isfile() and (file.mode, file.uid, file.gid) == (0o600, 70, 70)
        assert archive.extractfile(file).read() == b"s3cret"


def test_the_servers_settings_hold_no_password():
    settings = database.server_settings("172.29.8.4")
    assert settings == {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect@172.29.8.4:5432/postgres",
        "PGPASSFILE": database.PGPASS_FILE,
    }
    assert database.pgpass("172.29.8.4", "pw") == "172.29.8.4:5432:postgres:prefect:pw\n"
