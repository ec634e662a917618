"""``python -m flowdec``: the command line (see :mod:`flowdec.cli`)."""

import sys

from flowdec.cli import main

sys.exit(main())
