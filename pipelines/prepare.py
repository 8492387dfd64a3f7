"""``python -m pipelines.prepare``: prepare a dataset directory (see :mod:`pipelines.data.prepare`)."""

import sys

from pipelines.data.prepare import main

if __name__ == "__main__":
    sys.exit(main())
