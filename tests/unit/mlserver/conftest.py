"""Puts runtime-images/mlserver on sys.path for its unit tests.

airt_mlserver is no workspace member (MLServer's pins would constrain the products' lock), so
the project environment does not install it; its NumPy part (airt_mlserver.mlp) needs nothing
but NumPy and is imported from the source folder. The MLServer part runs in the image, proven
by the real-node e2e test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "runtime-images" / "mlserver"))
