import sys

from shared.tooling.cli import main

sys.exit(main())
