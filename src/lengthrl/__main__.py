from lengthrl.cli import main

raise SystemExit(main())
