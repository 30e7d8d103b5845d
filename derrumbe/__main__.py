from derrumbe.cli import main

raise SystemExit(main())
