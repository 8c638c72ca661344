from arm.cli import main

main()
