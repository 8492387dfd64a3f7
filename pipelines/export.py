"""``python -m pipelines.export``: a checkpoint -> a servable model file (see
:mod:`pipelines.serve.export`)."""

import sys

from pipelines.serve.export import main

if __name__ == "__main__":
    sys.exit(main())
