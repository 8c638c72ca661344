"""A flow that takes more memory than its container group has: the kernel kills it (137)."""

import time

from prefect import flow, get_run_logger


@flow(name="eats-memory")
def eats_memory(megabytes: int = 4096) -> None:
    get_run_logger().info("taking %d MB", megabytes)
    held = []
    for _ in range(megabytes):
        held.append(bytearray(1 << 20))  # touched: each page is really used
        time.sleep(0.001)
