"""``python -m storekit.probe KIND [--store ...]``: see :mod:`storekit.probe.serve`."""

import sys

from storekit.probe.serve import main

sys.exit(main())
