"""Build, tag and publish the prefect-aci base image."""
