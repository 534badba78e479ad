from gsmoe_lib.cli import main

raise SystemExit(main())
