"""The cdktf.json app: `cdktn synth` / `cdktn deploy <env>-<region>` run this.

The same code path as `mlfleet synth --all`: every shipped environment (or only
MLFLEET_ENV, when set) into the output directory the CLI asks for.
"""
from __future__ import annotations

import os
import sys

from mlfleet.stacks.cli import main

if __name__ == "__main__":
    outdir = os.environ.get("CDKTF_OUTDIR", "cdktf.out")
    selection = ["--env", os.environ["MLFLEET_ENV"]] if os.environ.get("MLFLEET_ENV") else ["--all"]
    sys.exit(main(["synth", *selection, "--outdir", outdir]))
