import sys

from storekit.cli import main

sys.exit(main())
