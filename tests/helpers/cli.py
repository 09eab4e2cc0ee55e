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


def dr_command(argv: list[str], capsys) -> tuple[int, str, str]:
    """A DR command (`mlfleet drill ...`, `mlfleet audit ...`) as the command line runs it: its
    exit code, or its error's code with the one line printed, and what it wrote (no traceback)."""
    import argparse
    import sys

    from mlfleet.dr.cli import register
    from mlfleet.stacks.environment.errors import MlfleetError

    parser = argparse.ArgumentParser(prog="mlfleet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except MlfleetError as exc:
        print(f"mlfleet: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    out, err = capsys.readouterr()
    return code, out, err
