from local_demo.cli import main

main()
