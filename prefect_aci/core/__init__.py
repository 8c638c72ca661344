"""The ground floor: what every prefect-aci stage shares, and nothing else. The error contract
(`errors`), where progress prints (`console`), where things live (`paths`), settings loading
(`settings`), the records one stage hands the next (`records`: build/image.json,
build/azure.json), the names that cross modules (`names`), the Docker engine connection
(`engine`), what more than one stage needs of Azure (`azure`: the credential, ACR names), how a
failed Prefect API call reads (`prefect_api`) and how ARM templates are read (`arm_template`).
It imports no stage; the import contracts in pyproject.toml hold that."""
