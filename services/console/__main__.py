"""`python -m services.console`: what `nrm up` starts for the web console."""

from services.console.app import main

raise SystemExit(main())
