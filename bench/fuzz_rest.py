"""Fuzz the REST front end against the Open Inference Protocol specification with schemathesis.
Not a test and not run by CI: schemathesis has its own virtualenv, which this script only calls.

    python3 -m venv .venv-fuzz && .venv-fuzz/bin/pip install schemathesis
    python bench/fuzz_rest.py [--schemathesis .venv-fuzz/bin/schemathesis] [--max-time 60] [--all-checks]

It starts `python -m mlfleet.runtime` on the example repository ("mlp", champion "2") and runs
schemathesis three times over tests/runtime/data/open_inference_rest.yaml (kserve's spec):

- "any-name": the spec as published, so model names and versions are arbitrary strings;
- "served-model": MODEL_NAME is "mlp" and MODEL_VERSION its champion "2", so bodies reach the model;
- "served-tensors": as "served-model", and each input is named "INPUT__0" with a v2 datatype, so
  shapes, datatypes and data reach the tensor checks.

The goal is no server error: any 5xx fails (the runtime's only documented 503s, shedding and not
ready, cannot happen to one sequential client of a ready server). `--all-checks` also reports
schemathesis' conformance checks (informative: the spec documents few statuses, see
runtime/README.md). Exit code 1 when a pass saw a server error (or, without `--all-checks`, when
schemathesis failed)."""
from __future__ import annotations

import argparse
import collections
import copy
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.signing import LocalSigningKey

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "runtime" / "data" / "open_inference_rest.yaml"
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES", "BF16"]


def load_spec() -> dict:
    spec = yaml.safe_load(SPEC.read_text())
    # the published spec writes path parameters as ${NAME}: OpenAPI's template is {NAME}
    spec["paths"] = {re.sub(r"\$\{(\w+)\}", r"{\1}", path): item for path, item in spec["paths"].items()}
    return spec


def served_model(spec: dict, tensors: bool) -> dict:
    spec = copy.deepcopy(spec)
    for item in spec["paths"].values():
        for parameter in item.get("parameters", []):
            if parameter["name"] == "MODEL_NAME":
                parameter["schema"] = {"type": "string", "enum": ["mlp"]}
            elif parameter["name"] == "MODEL_VERSION":
                parameter["schema"] = {"type": "string", "enum": ["2"]}
    if tensors:
        properties = spec["components"]["schemas"]["request_input"]["properties"]
        properties["name"] = {"type": "string", "enum": ["INPUT__0"]}
        properties["datatype"] = {"type": "string", "enum": DATATYPES}
    return spec


def status_counts(report_dir: Path) -> dict[int, int]:
    """Responses by status in a pass's ndjson report (each recorded exchange once)."""
    counts: collections.Counter[int] = collections.Counter()
    for report in report_dir.glob("*.ndjson"):
        counts.update(int(code) for code in re.findall(r'"status_code":\s*(\d+)', report.read_text()))
    return dict(sorted(counts.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemathesis", default=str(ROOT / ".venv-fuzz" / "bin" / "schemathesis"),
                        help="the schemathesis command of its own virtualenv")
    parser.add_argument("--max-time", type=int, default=60, help="seconds per pass (default 60)")
    parser.add_argument("--all-checks", action="store_true", help="also run schemathesis' conformance checks")
    args = parser.parse_args()
    if not Path(args.schemathesis).exists():
        print(f"{args.schemathesis} not found (see this script's docstring)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mlfleet-fuzz-"))
    repo = work / "repository"
    key = LocalSigningKey.generate("fuzz")
    write_example_repository(repo, models=("mlp",), signing_key=key)
    (work / "manifest-key.pem").write_bytes(key.public_key_pem())
    spec = load_spec()
    passes = {"any-name": spec, "served-model": served_model(spec, tensors=False),
              "served-tensors": served_model(spec, tensors=True)}
    failed: list[str] = []
    summary: list[str] = []
    with RuntimeProcess(repo, log_path=work / "runtime.log", manifest_public_key=work / "manifest-key.pem") as runtime:
        for name, schema in passes.items():
            path = work / f"{name}.yaml"
            path.write_text(yaml.safe_dump(schema, sort_keys=False))
            command = [args.schemathesis, "run", str(path), "--url", runtime.http_url,
                       "--checks", "all" if args.all_checks else "not_a_server_error",
                       "--max-time", str(args.max_time), "--workers", "1", "--no-color",
                       "--suppress-health-check", "all", "--report", "ndjson",
                       "--report-dir", str(work / name)]
            print(f"== {name}: {' '.join(command[1:])}", flush=True)
            # in the scratch folder: schemathesis keeps a cache of its findings in its working directory
            returncode = subprocess.run(command, cwd=work).returncode
            counts = status_counts(work / name)
            server_errors = sum(n for status, n in counts.items() if status >= 500)
            # the gate is the server errors; the conformance checks only inform (see the docstring)
            if server_errors or (returncode and not args.all_checks):
                failed.append(name)
            summary.append(f"{name}: {server_errors} server errors; responses by status {counts}")
    print("\n".join(summary))
    print(f"fuzz: {len(passes) - len(failed)} of {len(passes)} passes without a server error"
          + (f"; failures in {', '.join(failed)}" if failed else "") + f" (reports and runtime log: {work})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
