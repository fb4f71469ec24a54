from sessionlab.cli import main

raise SystemExit(main())
