"""What every prefect-aci command shares, and nothing else: the error and console contract
(`errors`, `console`), where things live (`paths`), settings loading (`settings`), the records one
stage hands the next (`records`: build/image.json, build/azure.json), the names that cross
modules (`names`) and the Docker engine connection (`engine`). Stages import this package, never
each other's internals."""
