"""`python -m daemon` runs the `hark` command (see daemon.cli.main)."""

import sys

from daemon.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
