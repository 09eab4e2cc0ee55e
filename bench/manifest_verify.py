"""Cost of trusting a signed manifest: what the runtime pays on every manifest read (at start and on
each pin with reload_manifest) to check manifest.json.sig before it parses manifest.json.

Run: `.venv/bin/python bench/manifest_verify.py [--models 20] [--versions 5] [--runs 2000]`.

The manifest is realistic in shape: MODELS x VERSIONS approved versions, each listing model.pt,
canary.json and a few more artifact files with their sha256, a config_sha256 per model, signed
with an EC P-256 key exactly as KMS would (ECDSA_SHA_256 over the bytes). Three timings, median
and p99 over RUNS: the signature check alone (what trusting the manifest adds; target: p99 <= 5 ms,
the exit code), parsing and validating the manifest (paid before signing existed too), and the
whole read as the runtime does it (both files from a local repository, verify, parse). The
machine is shared: read medians.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from mlfleet.runtime.manifest import MANIFEST_FILE, Manifest
from mlfleet.runtime.signing import LocalSigningKey, load_public_key, verify_manifest
from mlfleet.runtime.sources import LocalSource, read_manifest_bytes, read_signature_bytes

# what a version of a real model carries beside the weights and the golden canary
EXTRA_FILES = ("tokenizer.json", "preprocessing.json", "labels.txt")
TARGET_MS = 5.0


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def realistic_manifest(models: int, versions: int) -> bytes:
    entries = {}
    for m in range(models):
        name = f"model-{m:02d}"
        approved = {str(v): {"files": {f: _digest(name, str(v), f) for f in ("model.pt", "canary.json", *EXTRA_FILES)},
                             "approved_by": "arn:aws:iam::333333333333:role/mlfleet-prod-us-east-1-review",
                             "approved_at": "2026-11-30T12:00:00Z"}
                    for v in range(1, versions + 1)}
        entries[name] = {"champion": str(versions), "versions": approved, "config_sha256": _digest(name, "config")}
    return Manifest.model_validate({"models": entries}).model_dump_json(indent=2).encode()


def timed(function: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p99 in milliseconds."""
    for _ in range(min(50, runs)):  # warm caches and the allocator
        function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args(argv)

    manifest_bytes = realistic_manifest(args.models, args.versions)
    key = LocalSigningKey.generate("bench")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / MANIFEST_FILE).write_bytes(manifest_bytes)
        key.sign_file(root / MANIFEST_FILE)
        (root / "public.pem").write_bytes(key.public_key_pem())
        public_key = load_public_key(root / "public.pem")
        signature = read_signature_bytes(LocalSource(root))
        source = LocalSource(root)

        def whole_read() -> Manifest:
            data = read_manifest_bytes(source)
            verify_manifest(data, read_signature_bytes(source), public_key)
            return Manifest.load(data)

        rows = [("signature check (verify_manifest)", timed(lambda: verify_manifest(manifest_bytes, signature,
                                                                                     public_key), args.runs)),
                ("parse + validate (Manifest.load)", timed(lambda: Manifest.load(manifest_bytes), args.runs)),
                ("whole read: files, verify, parse", timed(whole_read, args.runs))]
    print(f"manifest: {args.models} models x {args.versions} versions, {len(manifest_bytes) / 1024:.0f} KiB; "
          f"{args.runs} runs")
    for label, (median, p99) in rows:
        print(f"  {label:<36} median {median:6.3f} ms   p99 {p99:6.3f} ms")
    verify_p99, whole_median = rows[0][1][1], rows[-1][1][0]
    verdict = "within" if verify_p99 <= TARGET_MS else "OVER"
    print(f"signature check p99 {verify_p99:.3f} ms: {verdict} the {TARGET_MS:g} ms target "
          f"(the whole read, parse included, median {whole_median:.3f} ms)")
    return 0 if verify_p99 <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
