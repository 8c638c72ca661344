"""A flow that raises: its run must end Failed, not Crashed."""

from prefect import flow


@flow(name="fails-on-purpose")
def fails() -> None:
    raise RuntimeError("this flow fails on purpose")
