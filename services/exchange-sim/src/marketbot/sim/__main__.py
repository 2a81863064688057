from marketbot.sim.cli import main

main()
