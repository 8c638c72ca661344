from deploy_all.cli import main

main()
