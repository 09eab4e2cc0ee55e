"""python -m mlfleet.runtime: the same as `mlfleet serve`."""
import logging
import os
import sys

from .cli import main

code = main()
# The drain is over and the models are closed: skip the interpreter's teardown of torch and the
# other extension modules (about a second, more on a loaded node), which would otherwise eat the
# margin the drain leaves before --grace-period ends.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
