"""python -m mlfleet.runtime: the same as `mlfleet serve`."""
import sys

from .cli import main

sys.exit(main())
