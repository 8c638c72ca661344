"""A flow that takes its time: long enough to cancel it, or to kill the worker under it."""

import time

from prefect import flow, get_run_logger


@flow(name="sleeps")
def sleeps(seconds: int = 300) -> None:
    get_run_logger().info("sleeping %d s", seconds)
    time.sleep(seconds)
