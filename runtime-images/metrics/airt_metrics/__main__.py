"""`python -m airt_metrics`: the sidecar without the `airt` CLI (used by tests and the image)."""

import sys

from airt_metrics.main import main

sys.exit(main(sys.argv[1:]))
