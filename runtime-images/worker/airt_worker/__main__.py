"""`python -m airt_worker`: the worker without the `airt` CLI (used by the worker-tier tests)."""

import sys

from airt_worker.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
