from logcast.cli.main import main

main()
