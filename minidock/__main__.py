from minidock.cli import main

main()
