from prefect_aci.cli import main

main()
