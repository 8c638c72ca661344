"""`prefect server start` from the image answers /api/health (the local stack depends on it)."""

import json
import time
import urllib.error
import urllib.request


def test_prefect_server_answers_health(docker_client, image):
    container = docker_client.containers.run(
        image,
        ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"],  # noqa: S104 (inside the container; published on 127.0.0.1)
        detach=True,
        environment={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        ports={"4200/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["4200/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}/api/health"
        deadline = time.monotonic() + 180
        answer = None
        while time.monotonic() < deadline and answer is None:
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    answer = (response.status, json.loads(response.read()))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        assert answer == (200, True), container.logs().decode()[-3000:]
    finally:
        container.remove(force=True)
