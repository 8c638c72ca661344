"""`make demo`: the same image, flow and wiring as on Azure, on one machine with no Azure account.

A local OCI registry stands in for ACR, Azurite for Blob storage, a Prefect server from our own
image for Prefect Cloud, a Docker worker for the ACI worker, and Prefect Secret blocks for Key
Vault (there is no Key Vault emulator).
"""
