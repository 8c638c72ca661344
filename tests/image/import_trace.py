"""Mounted into a container of the image under test as `sitecustomize` (PYTHONPATH): records
every file Python opens and every source it compiles, and writes them to TRACE_DIR at exit.

The tests read it to check the bytecode trim: a worker start and a flow run must find bytecode
for every module of site-packages they import (nothing compiled at start), and the union of what
they open is docker/bytecode-keep.txt (PREFECT_ACI_WRITE_BYTECODE_KEEP=1 rewrites it).
"""

import atexit
import json
import os
import sys

_opened: set[str] = set()
_compiled: set[str] = set()


def _hook(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], str):
        _opened.add(args[0])
    elif event == "compile" and len(args) > 1 and isinstance(args[1], str):
        _compiled.add(args[1])


def _write() -> None:
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            _opened.add(path)
    name = f"{os.getpid()}-{os.urandom(4).hex()}.json"
    trace = {"argv": sys.argv, "opened": sorted(_opened), "compiled": sorted(_compiled)}
    with open(os.path.join(os.environ["TRACE_DIR"], name), "w") as out:
        json.dump(trace, out)


if os.environ.get("TRACE_DIR"):
    sys.addaudithook(_hook)
    atexit.register(_write)
