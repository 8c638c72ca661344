"""`make deploy-all`: the Azure side, the image, the Prefect side and the demo deployment."""
