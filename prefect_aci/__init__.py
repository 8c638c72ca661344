"""prefect-aci: run Prefect 3 flows on Azure Container Instances.

`prefect_aci.core` holds what every command shares; `prefect_aci.cli` is the `prefect-aci`
command. The stages live beside it: `image_builder/` (the image), `arm/` (Azure),
`blocks/` (the Prefect side), `flows/` (the demo flow).
"""
