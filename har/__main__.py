"""``python -m har <command>``: see har/cli.py."""

import sys

from har.cli import main

sys.exit(main())
