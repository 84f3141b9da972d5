"""``python -m ipcnet`` runs the command-line tool."""

import sys

from ipcnet.cli import main

sys.exit(main())
