"""Running the `mlfleet` command line in-process, as a user would from a shell."""
from __future__ import annotations

from pathlib import Path

import yaml

from mlfleet.stacks.cli import main


def synth_invalid(tmp_path: Path, capsys, data: dict) -> str:
    """`mlfleet synth --config` of `data`, which must be refused: exit 2, nothing written, no
    traceback. Returns what it printed on stderr."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    outdir = tmp_path / "out"
    code = main(["synth", "--config", str(path), "--outdir", str(outdir)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not outdir.exists(), "nothing may be written for invalid input"
    assert "Traceback" not in err
    return err
