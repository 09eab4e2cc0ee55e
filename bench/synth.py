"""Synth cost of mlfleet against a bare cdktn app that creates the same resources.

Run: `make bench` (or `.venv/bin/python bench/synth.py [--runs N]`).

Each measurement is a fresh process, as `cdktn synth` would start one:
- mlfleet: load + validate the environment, build its stacks with mlfleet's constructs,
  run the policy pass, synthesize;
- bare: a plain cdktn app that instantiates, class for class, the same provider resources
  with the same attributes (replayed from mlfleet's own output), and synthesizes.
Wall time and peak memory (the Python process plus its jsii node child) are reported as
medians with the ratio, for the prod example (AWS) and the cross-cloud hybrid example (AWS and
Google Cloud providers in one app; `--envs` picks others). A last table synthesizes the prod
example with 1…4 regions to show the cost of each added region. The machine is shared and noisy: read
medians and ratios.
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
from mlfleet.stacks.environment import load_environment_file
from mlfleet.stacks.app import synthesize
from mlfleet.constructs.terraform_json import resource_count
env = load_environment_file(Path(sys.argv[1]))
result = synthesize([env], Path(sys.argv[2]))
resources = sum(resource_count(tf) for tf in result.stacks.values())
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": _peak_kib() / 1024, "resources": resources}))
"""

# A plain cdktn app that replays synthesized stacks class for class, on either provider.
REPLAY = r"""
import importlib
from mlfleet.stacks.node_runtime import use_project_node; use_project_node()  # before cdktn loads jsii
from cdktn import App, TerraformStack, S3Backend, GcsBackend, Token
PROVIDERS = {"aws": ("cdktn_provider_aws", "AwsProvider"), "google": ("cdktn_provider_google", "GoogleProvider"),
             "kubernetes": ("cdktn_provider_kubernetes", "KubernetesProvider"),
             "helm": ("cdktn_provider_helm", "HelmProvider")}
classes = {}
def resource_class(kind, rtype):
    if (kind, rtype) not in classes:
        prefix = rtype.split("_", 1)[0]
        package = PROVIDERS[prefix][0]
        # The bindings keep the provider's prefix in data source modules (data_aws_…, data_google_…).
        name = rtype if kind == "data" else rtype.removeprefix(prefix + "_")
        module = importlib.import_module(f"{package}." + ("data_" if kind == "data" else "") + name)
        classes[(kind, rtype)] = next(c for c in vars(module).values()
                                      if isinstance(c, type) and getattr(c, "TF_RESOURCE_TYPE", None) == rtype)
    return classes[(kind, rtype)]
def _camel(value):
    # Blocks inside lists reach jsii as plain maps, which it reads with its own camelCase names
    # (a struct passed directly is converted by the Python bindings themselves).
    if isinstance(value, dict):
        return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): _camel(v) for k, v in value.items()}
    return [_camel(v) for v in value] if isinstance(value, list) else value
def _arg(value):
    # A struct given as a dict is converted level by level by the bindings, down to its first list.
    if isinstance(value, dict):
        return {k: _arg(v) for k, v in value.items()}
    return [_camel(v) for v in value] if isinstance(value, list) else value
def replay(stacks, outdir):
    app = App(outdir=str(outdir), stack_traces=False,
              context={"targetVersions": {"terraform": ">=1.10.0", "opentofu": ">=1.10.0"}})
    count = 0
    for name, tf in stacks.items():
        stack = TerraformStack(app, name)
        backends = tf["terraform"].get("backend", {})
        if "s3" in backends:
            S3Backend(stack, **backends["s3"])
        if "gcs" in backends:
            GcsBackend(stack, **backends["gcs"])
        for prefix, configs in tf.get("provider", {}).items():
            package, class_name = PROVIDERS[prefix]
            cls = getattr(importlib.import_module(f"{package}.provider"), class_name)
            for provider in configs:
                cls(stack, prefix + (provider.get("alias") or ""), **provider)
        for kind in ("data", "resource"):
            for rtype, items in tf.get(kind, {}).items():
                for rid, body in items.items():
                    args = {k: _arg(v) for k, v in body.items()
                            if k not in ("//", "lifecycle", "depends_on", "provider", "for_each")}
                    # A list-valued expression arrives as one string; jsii takes it as a list token.
                    args = {k: Token.as_list(v) if isinstance(v, str) and v.startswith("${[") else v
                            for k, v in args.items()}
                    made = resource_class(kind, rtype)(stack, rid, **args)
                    if "for_each" in body:
                        made.add_override("for_each", body["for_each"])
                    count += 1
    app.synth()
    return count
"""

BARE = PEAK + REPLAY + r"""
import sys, time, json
from pathlib import Path
t0 = time.perf_counter()
count = replay(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": _peak_kib() / 1024, "resources": count}))
"""


PER_REGION = REPLAY + r"""
import sys, time, json, statistics
from pathlib import Path
from mlfleet.stacks.environment import parse_environment
from mlfleet.stacks.app import synthesize
envs, out, runs = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), int(sys.argv[3])
parsed = [parse_environment(e, f"{i + 1} regions") for i, e in enumerate(envs)]
replays = [synthesize([env], out / f"ref{i}").stacks for i, env in enumerate(parsed)]  # also warms imports
times = {"bare": [[] for _ in parsed], "mlfleet": [[] for _ in parsed]}
for run in range(runs):
    for i, env in enumerate(parsed):
        t = time.perf_counter()
        replay(replays[i], out / f"b{run}-{i}")
        times["bare"][i].append(time.perf_counter() - t)
        t = time.perf_counter()
        synthesize([env], out / f"m{run}-{i}")
        times["mlfleet"][i].append(time.perf_counter() - t)
print(json.dumps({k: [statistics.median(v) for v in per] for k, per in times.items()}))
"""


def _slope(ys: list[float]) -> float:
    """Least-squares slope over 1..n: less sensitive to one noisy point than first-to-last."""
    xs = range(1, len(ys) + 1)
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)


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


def _compare(name: str, data: dict, runs: int, tmp: Path) -> None:
    """Whole-environment synth in fresh processes, mlfleet against the bare replay of its output."""
    env_file = tmp / f"{name}.yaml"
    import yaml
    env_file.write_text(yaml.safe_dump(data))
    _run(MLFLEET, str(env_file), str(tmp / f"{name}-ref"))
    stacks = {p.parent.name: json.loads(p.read_text()) for p in (tmp / f"{name}-ref").glob("stacks/*/cdk.tf.json")}
    replay = tmp / f"{name}-replay.json"
    replay.write_text(json.dumps(stacks))

    rows = {"mlfleet": [], "bare": []}
    for i in range(runs):  # interleaved, so drift in machine load hits both alike
        rows["bare"].append(_run(BARE, str(replay), str(tmp / f"{name}-bare{i}")))
        rows["mlfleet"].append(_run(MLFLEET, str(env_file), str(tmp / f"{name}-ml{i}")))
    peak = {k: statistics.median(r["peak_mib"] for r in v) for k, v in rows.items()}
    med = {k: statistics.median(r["wall"] for r in v) for k, v in rows.items()}
    providers = sorted({p for tf in stacks.values() for p in tf.get("provider", {})})
    print(f"{name} example: {len(stacks)} stacks, {rows['mlfleet'][0]['resources']} resources, "
          f"providers {', '.join(providers)}; {runs} runs each, fresh process per run\n")
    print(f"{'':10}{'median wall s':>15}{'min':>8}{'max':>8}{'peak MiB':>10}")
    for kind in ("bare", "mlfleet"):
        walls = [r["wall"] for r in rows[kind]]
        print(f"{kind:10}{med[kind]:>15.2f}{min(walls):>8.2f}{max(walls):>8.2f}{peak[kind]:>10.0f}")
    print(f"\nratio mlfleet / bare: wall {med['mlfleet'] / med['bare']:.2f}x (target <= 1.2x), "
          f"peak memory {peak['mlfleet'] / peak['bare']:.2f}x\n")


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--envs", nargs="+", default=["prod", "hybrid"],
                        help="example environments to compare (default: prod, and the cross-cloud hybrid)")
    args = parser.parse_args()

    examples = ROOT / "stacks" / "environment" / "examples"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.envs:
            _compare(name, yaml.safe_load((examples / f"{name}.yaml").read_text()), args.runs, tmp)

        # Per added region, in one warm process (imports paid once), so that the few tenths
        # of a second a region costs are not lost in process start-up noise.
        prod = yaml.safe_load((examples / "prod.yaml").read_text())
        envs = tmp / "envs.json"
        envs.write_text(json.dumps([_environment_with_regions(prod, n) for n in range(1, 5)]))
        medians = _run(PER_REGION, str(envs), str(tmp / "per-region"), str(args.runs))
        print("per added region (prod example with 1..4 regions, warm process, median of runs):")
        print(f"  {'regions':<10}{'bare s':>10}{'mlfleet s':>12}")
        for n in range(4):
            print(f"  {n + 1:<10}{medians['bare'][n]:>10.3f}{medians['mlfleet'][n]:>12.3f}")
        bare_slope, ml_slope = _slope(medians["bare"]), _slope(medians["mlfleet"])
        print(f"  cost per added region: mlfleet {ml_slope * 1000:.0f} ms, bare {bare_slope * 1000:.0f} ms, "
              f"mlfleet's own share {(ml_slope - bare_slope) * 1000:.0f} ms (target < 100 ms per region)")


if __name__ == "__main__":
    main()
