"""`mlfleet review` and `mlfleet drift`. Registered by the main CLI through `register`; heavy
imports (the CDK, boto3) happen inside the handlers."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlfleet.stacks.environment.errors import MlfleetError


def register(subparsers) -> None:
    review = subparsers.add_parser(
        "review", help="what a reviewer reads: capacity, cost, RTO/RPO, findings, diff against a base",
        description="Synthesize an environment and report on it. Exit 0: clean; 1: an unacknowledged "
                    "high-severity finding; 2: a usage or configuration error.")
    _environment_arguments(review)
    review.add_argument("--base", metavar="DIR|GIT-REF",
                        help="compare with a previous synth directory (cdktf.out) or the environment file at a git ref")
    review.add_argument("--format", choices=("md", "json"), default="md", help="Markdown (default) or JSON")
    review.add_argument("--out", metavar="FILE", help="write the report here (default: stdout); the SVG goes beside it")
    review.add_argument("--svg", metavar="FILE", help="write the architecture picture here (default: beside --out)")
    review.add_argument("--no-checkov", action="store_true", help="do not run checkov even when it is installed")
    review.set_defaults(handler=run_review)

    drift = subparsers.add_parser(
        "drift", help="compare the live platform (boto3, the Google clients) with the synthesized intent",
        description="Read node groups and pools, buckets, the registry databases and Route 53 on AWS (boto3) and "
                    "Google Cloud (the Google clients) and compare them with the code. Exit 0: no drift; 1: drift; "
                    "2: a usage or configuration error. boto3's usual configuration applies (AWS_PROFILE, "
                    "AWS_ENDPOINT_URL, ...); Google Cloud uses the application default credentials.")
    _environment_arguments(drift)
    drift.add_argument("--region", help="only this region of the environment, 'global' or 'gcp-global' "
                                        "(default: everything)")
    drift.add_argument("--gcp-endpoint", metavar="URL",
                       help="Google API endpoint for every Google call (default Google's); no credentials are sent")
    drift.add_argument("--format", choices=("text", "json"), default="text")
    drift.set_defaults(handler=run_drift)


def _environment_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", help="a shipped environment (stacks/environment/examples/NAME.yaml)")
    which.add_argument("--config", metavar="FILE", help="an environment file anywhere")


def _environment(args: argparse.Namespace):
    from mlfleet.stacks.environment import ENVIRONMENTS_DIR, load_environment, load_environment_file

    if args.config:
        path = Path(args.config)
        return load_environment_file(path), path
    return load_environment(args.env), ENVIRONMENTS_DIR / f"{args.env}.yaml"


def run_review(args: argparse.Namespace) -> int:
    from mlfleet.stacks.review.base import load_base
    from mlfleet.stacks.review.diagram import render_svg
    from mlfleet.stacks.review.report import build_review, render_markdown, to_json

    env, env_file = _environment(args)
    base = load_base(args.base, env.name, env_file) if args.base else None
    review = build_review(env, base=base, run_checkov=not args.no_checkov)
    svg = Path(args.svg) if args.svg else Path(args.out).with_suffix(".svg") if args.out else None
    if svg is not None:
        _write(svg, render_svg(env, review.stacks))
    # The report links the picture by a path relative to the report itself.
    beside = svg is not None and args.out and svg.parent.resolve() == Path(args.out).parent.resolve()
    link = (svg.name if beside else str(svg)) if svg else None
    text = (json.dumps(to_json(review, link), indent=2) + "\n" if args.format == "json"
            else render_markdown(review, link))
    if args.out:
        _write(Path(args.out), text)
        print(f"review of {env.name} written to {args.out}" + (f", picture {svg}" if svg else ""), file=sys.stderr)
    else:
        sys.stdout.write(text)
    return review.exit_code


def run_drift(args: argparse.Namespace) -> int:
    import boto3
    from google.auth.exceptions import DefaultCredentialsError

    from mlfleet.stacks.clients.google_cloud import GcpClients
    from mlfleet.stacks.review.drift import check_scope, detect_drift, render_text
    from mlfleet.stacks.review.synth import synthesize_for_review

    env, _ = _environment(args)
    check_scope(env, args.region)
    stacks, _ = synthesize_for_review(env)
    try:
        drifts = detect_drift(env, stacks, boto3.Session(), only=args.region,
                              gcp_clients=GcpClients(endpoint=args.gcp_endpoint))
    except DefaultCredentialsError as exc:
        raise MlfleetError(f"no Google credentials to read {env.name}'s Google Cloud regions: "
                           f"{str(exc).rstrip('.')}; run `gcloud auth application-default login`, "
                           "or narrow with --region to an AWS region") from None
    if args.format == "json":
        print(json.dumps([d.as_dict() for d in drifts], indent=2))
    else:
        sys.stdout.write(render_text(env, drifts, args.region))
    return 1 if drifts else 0


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise MlfleetError(f"cannot write {path}: {exc.strerror or exc}") from None
