"""``python -m ipcnet.bench.peers NAME URL``: run one peer echo server until SIGTERM."""

import sys

from ipcnet.bench.peers import main

sys.exit(main())
