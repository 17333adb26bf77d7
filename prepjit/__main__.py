from prepjit.cli import main

raise SystemExit(main())
