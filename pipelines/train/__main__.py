"""``python -m pipelines.train``: train and evaluate (see :mod:`pipelines.train.trainer`)."""

import sys

from pipelines.train.trainer import main

if __name__ == "__main__":
    sys.exit(main())
