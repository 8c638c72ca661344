from image_builder.cli import main

main()
