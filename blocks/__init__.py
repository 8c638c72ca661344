"""Registration of the Prefect side: credentials block, ACI work pool, storage blocks, variable."""
