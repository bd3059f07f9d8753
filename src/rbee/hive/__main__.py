from rbee.hive.server import main

main()
