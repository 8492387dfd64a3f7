"""``python -m pipelines.score``: score a split with an exported model (see
:mod:`pipelines.serve.score`)."""

import sys

from pipelines.serve.score import main

if __name__ == "__main__":
    sys.exit(main())
