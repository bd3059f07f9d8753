from rbee.worker.server import main

main()
