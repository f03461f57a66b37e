from minidock.entry import main

main()
