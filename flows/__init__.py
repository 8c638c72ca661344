"""Demo flows of prefect-aci."""
