"""Synth cost of mlfleet against a bare cdktn app that creates the same resources.

Run: `make bench` (or `.venv/bin/python bench/synth.py [--runs N]`).

Each measurement is a fresh process, as `cdktn synth` would start one:
- mlfleet: load + validate the environment, build its stacks with mlfleet's constructs,
  run the policy pass, synthesize;
- bare: a plain cdktn app that instantiates, class for class, the same provider resources
  with the same attributes (replayed from mlfleet's own output), and synthesizes.
Wall time and peak memory (the Python process plus its jsii node child) are reported as
medians with the ratio. A second table synthesizes the prod example with 1…4 regions to
show the cost of each added region. The machine is shared and noisy: read medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PEAK = r"""
def _peak_kib():
    # VmHWM of this process plus its children (the jsii node kernel is still running).
    import os
    def hwm(pid):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0
    def descendants(pid):
        found = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                for child in open(f"/proc/{pid}/task/{task}/children").read().split():
                    found += [int(child)] + descendants(int(child))
            except OSError:
                pass
        return found
    me = os.getpid()
    # jsii's runtime wrapper starts the kernel as a node process of its own.
    return hwm(me) + sum(hwm(pid) for pid in descendants(me))
"""

MLFLEET = PEAK + r"""
import sys, time, json
from pathlib import Path
t0 = time.perf_counter()
from mlfleet.stacks.node_runtime import use_project_node; use_project_node()
from mlfleet.stacks.config import load_environment_file
from mlfleet.stacks.app import synthesize
env = load_environment_file(Path(sys.argv[1]))
result = synthesize([env], Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": _peak_kib() / 1024,
                  "resources": sum(sum(len(v) for v in tf.get("resource", {}).values()) for tf in result.stacks.values())}))
"""

BARE = PEAK + r"""
import sys, time, json, importlib, pkgutil
from pathlib import Path
t0 = time.perf_counter()
from mlfleet.stacks.node_runtime import use_project_node; use_project_node()
from cdktn import App, TerraformStack, S3Backend
import cdktn_provider_aws
stacks = json.loads(Path(sys.argv[1]).read_text())
app = App(outdir=sys.argv[2], stack_traces=False,
          context={"targetVersions": {"terraform": ">=1.10.0", "opentofu": ">=1.10.0"}})
classes = {}
def resource_class(kind, rtype):
    key = (kind, rtype)
    if key not in classes:
        module_name = ("data_" if kind == "data" else "") + rtype.removeprefix("aws_")
        module = importlib.import_module(f"cdktn_provider_aws.{module_name}")
        classes[key] = next(c for c in vars(module).values()
                            if isinstance(c, type) and getattr(c, "TF_RESOURCE_TYPE", None) == rtype)
    return classes[key]
def kwargs(body):
    return {k: v for k, v in body.items() if k not in ("//", "lifecycle", "depends_on", "provider")}
count = 0
for name, tf in stacks.items():
    stack = TerraformStack(app, name)
    backend = tf["terraform"].get("backend", {}).get("s3")
    if backend:
        S3Backend(stack, **backend)
    from cdktn_provider_aws.provider import AwsProvider
    for provider in tf["provider"]["aws"]:
        AwsProvider(stack, "aws" + (provider.get("alias") or ""), **provider)
    for kind in ("data", "resource"):
        for rtype, items in tf.get(kind, {}).items():
            cls = resource_class(kind, rtype)
            for rid, body in items.items():
                cls(stack, rid, **kwargs(body))
                count += 1
app.synth()
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": _peak_kib() / 1024, "resources": count}))
"""


PER_REGION = r"""
import sys, time, json, importlib, statistics
from pathlib import Path
from mlfleet.stacks.node_runtime import use_project_node; use_project_node()
from mlfleet.stacks.config import parse_environment
from mlfleet.stacks.app import synthesize
from cdktn import App, TerraformStack, S3Backend
from cdktn_provider_aws.provider import AwsProvider
envs, out, runs = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), int(sys.argv[3])
classes = {}
def resource_class(kind, rtype):
    if (kind, rtype) not in classes:
        module = importlib.import_module("cdktn_provider_aws." + ("data_" if kind == "data" else "") + rtype.removeprefix("aws_"))
        classes[(kind, rtype)] = next(c for c in vars(module).values()
                                      if isinstance(c, type) and getattr(c, "TF_RESOURCE_TYPE", None) == rtype)
    return classes[(kind, rtype)]
def bare(stacks, outdir):
    app = App(outdir=str(outdir), stack_traces=False,
              context={"targetVersions": {"terraform": ">=1.10.0", "opentofu": ">=1.10.0"}})
    for name, tf in stacks.items():
        stack = TerraformStack(app, name)
        S3Backend(stack, **tf["terraform"]["backend"]["s3"])
        for provider in tf["provider"]["aws"]:
            AwsProvider(stack, "aws", **provider)
        for kind in ("data", "resource"):
            for rtype, items in tf.get(kind, {}).items():
                for rid, body in items.items():
                    resource_class(kind, rtype)(stack, rid, **{k: v for k, v in body.items()
                                                               if k not in ("//", "lifecycle", "depends_on", "provider")})
    app.synth()
parsed = [parse_environment(e, f"{i + 1} regions") for i, e in enumerate(envs)]
replays = [synthesize([env], out / f"ref{i}").stacks for i, env in enumerate(parsed)]  # also warms imports
times = {"bare": [[] for _ in parsed], "mlfleet": [[] for _ in parsed]}
for run in range(runs):
    for i, env in enumerate(parsed):
        t = time.perf_counter(); bare(replays[i], out / f"b{run}-{i}"); times["bare"][i].append(time.perf_counter() - t)
        t = time.perf_counter(); synthesize([env], out / f"m{run}-{i}"); times["mlfleet"][i].append(time.perf_counter() - t)
print(json.dumps({k: [statistics.median(v) for v in per] for k, per in times.items()}))
"""


def _slope(ys: list[float]) -> float:
    """Least-squares slope over 1..n: less sensitive to one noisy point than first-to-last."""
    xs = range(1, len(ys) + 1)
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def _run(script: str, *args: str) -> dict:
    """One measurement in a fresh process: wall time (process start included) and peak memory."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def _environment_with_regions(base: dict, count: int) -> dict:
    env = json.loads(json.dumps(base))
    extra = [("us-west-2", "10.41.0.0/16"), ("us-east-2", "10.42.0.0/16"), ("eu-north-1", "10.43.0.0/16")]
    env["regions"] = env["regions"][:1] + [
        {"name": name, "role": "standby", "network": {"cidr": cidr}} for name, cidr in extra[: count - 1]]
    for pool in env["gpu_pools"]:
        pool["reservations"] = {r: v for r, v in pool.get("reservations", {}).items()
                                if r in {x["name"] for x in env["regions"]}}
    return env


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    prod = yaml.safe_load((ROOT / "stacks/environments/prod.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env_file = tmp / "prod.yaml"
        env_file.write_text(yaml.safe_dump(prod))
        # The bare app replays exactly what mlfleet synthesized.
        _run(MLFLEET, str(env_file), str(tmp / "ref"))
        stacks = {p.parent.name: json.loads(p.read_text()) for p in (tmp / "ref").glob("stacks/*/cdk.tf.json")}
        replay = tmp / "replay.json"
        replay.write_text(json.dumps(stacks))

        rows = {"mlfleet": [], "bare": []}
        for i in range(args.runs):  # interleaved, so drift in machine load hits both alike
            rows["bare"].append(_run(BARE, str(replay), str(tmp / f"bare{i}")))
            rows["mlfleet"].append(_run(MLFLEET, str(env_file), str(tmp / f"ml{i}")))
        peak = {k: statistics.median(r["peak_mib"] for r in v) for k, v in rows.items()}

        med = {k: statistics.median(r["wall"] for r in v) for k, v in rows.items()}
        print(f"prod example: {len(stacks)} stacks, {rows['mlfleet'][0]['resources']} resources; "
              f"{args.runs} runs each, fresh process per run\n")
        print(f"{'':10}{'median wall s':>15}{'min':>8}{'max':>8}{'peak MiB':>10}")
        for name in ("bare", "mlfleet"):
            walls = [r["wall"] for r in rows[name]]
            print(f"{name:10}{med[name]:>15.2f}{min(walls):>8.2f}{max(walls):>8.2f}{peak[name]:>10.0f}")
        print(f"\nratio mlfleet / bare: wall {med['mlfleet'] / med['bare']:.2f}x (target <= 1.2x), "
              f"peak memory {peak['mlfleet'] / peak['bare']:.2f}x")

        # Per added region, in one warm process (imports paid once), so that the few tenths
        # of a second a region costs are not lost in process start-up noise.
        envs = tmp / "envs.json"
        envs.write_text(json.dumps([_environment_with_regions(prod, n) for n in range(1, 5)]))
        medians = _run(PER_REGION, str(envs), str(tmp / "per-region"), str(args.runs))
        print("\nper added region (prod example with 1..4 regions, warm process, median of runs):")
        print(f"  {'regions':<10}{'bare s':>10}{'mlfleet s':>12}")
        for n in range(4):
            print(f"  {n + 1:<10}{medians['bare'][n]:>10.3f}{medians['mlfleet'][n]:>12.3f}")
        bare_slope, ml_slope = _slope(medians["bare"]), _slope(medians["mlfleet"])
        print(f"  cost per added region: mlfleet {ml_slope * 1000:.0f} ms, bare {bare_slope * 1000:.0f} ms, "
              f"mlfleet's own share {(ml_slope - bare_slope) * 1000:.0f} ms (target < 100 ms per region)")

if __name__ == "__main__":
    main()
