from rbee.queen.server import main

main()
