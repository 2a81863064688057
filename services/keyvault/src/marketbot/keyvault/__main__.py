from marketbot.keyvault.cli import main

raise SystemExit(main())
