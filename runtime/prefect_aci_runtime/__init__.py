"""prefect-aci's code inside the image: `python -m prefect_aci_runtime.warm` (a standby pool
member waiting for its flow run) and the `azure-container-instance-standby` worker type."""
