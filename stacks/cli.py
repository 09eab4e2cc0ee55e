"""The `mlfleet` command line.

Subcommands of other parts (`serve` from the runtime, the DR runbooks and sandbox) register
themselves here; each handler returns its exit code. A user mistake is one clear message on
stderr and exit code 2 (or the error's own code), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.node_runtime import use_project_node


def _environments(args: argparse.Namespace):
    from mlfleet.stacks.environment import environment_names, load_environment, load_environment_file

    if getattr(args, "config", None):
        return [load_environment_file(Path(args.config))]
    if getattr(args, "all", False):
        return [load_environment(name) for name in environment_names()]
    return [load_environment(args.env)]


def _cmd_synth(args: argparse.Namespace) -> int:
    from mlfleet.stacks.app import synthesize
    from mlfleet.stacks.summary import render_summary

    envs = _environments(args)  # validated before the CDK is even imported
    result = synthesize(envs, Path(args.outdir))
    print(render_summary(result), end="")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from mlfleet.stacks.app import synthesize
    from mlfleet.stacks.deploy import deploy_stack, require_cluster
    from mlfleet.stacks.environment import naming

    env = _environments(args)[0]
    # A region is two stacks: its failure domain, then what runs in its cluster.
    parts = {"regional": [naming.stack_name], "serving": [naming.serving_stack_name],
             "both": [naming.stack_name, naming.serving_stack_name]}[args.part]
    stacks = {r.name: [name(env.name, r.name) for name in parts] for r in env.regions}
    stacks["global"] = [naming.global_stack_name(env.name)]
    if env.regions_on("gcp"):
        stacks["gcp-global"] = [naming.gcp_global_stack_name(env.name)]
    if args.region not in stacks:
        raise MlfleetError(f"environment {env.name} has no region {args.region!r}; "
                           f"choose one of {', '.join(stacks)}")
    if args.part != "both" and args.region in ("global", "gcp-global"):
        raise MlfleetError(f"--part {args.part} applies to a region's stacks, not to {args.region}")
    result = synthesize([env], Path(args.outdir))
    for stack in stacks[args.region]:
        if stack.endswith("-serving"):
            require_cluster(env, env.region(args.region), gcp_endpoint=args.gcp_endpoint)
        deploy_stack(result.outdir / "stacks" / stack, stack, plan_only=args.plan, auto_approve=args.auto_approve)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from mlfleet.stacks.environment import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_capacity_refresh(args: argparse.Namespace) -> int:
    if args.cloud == "gcp":
        return _capacity_refresh_gcp(args)
    stray = [flag for flag, value in (("--project", args.project), ("--endpoint", args.endpoint)) if value]
    if stray:
        raise MlfleetError(f"{' and '.join(stray)} {'apply' if len(stray) > 1 else 'applies'} to --cloud gcp only")
    import boto3

    from mlfleet.stacks.environment.offerings import AWS_TABLE, refresh_aws_table

    session = boto3.Session(profile_name=args.profile) if args.profile else boto3.Session()
    source = args.source or "EC2 DescribeInstanceTypes and DescribeInstanceTypeOfferings via `mlfleet capacity refresh`"
    table = refresh_aws_table(session, args.regions, source, Path(args.out) if args.out else AWS_TABLE)
    print(f"{len(table['instance_types'])} GPU instance types in {len(table['regions'])} regions "
          f"written to {args.out or 'the shipped table'} ({table['generated_at']})")
    return 0


def _capacity_refresh_gcp(args: argparse.Namespace) -> int:
    if not args.project:
        raise MlfleetError("--cloud gcp needs --project PROJECT_ID (the project whose zones are listed)")
    if args.profile:
        raise MlfleetError("--profile applies to --cloud aws only")
    import google.auth.exceptions
    import requests
    from google.api_core import exceptions as api_exceptions

    from mlfleet.stacks.environment.gcp_offerings import (
        GCP_TABLE,
        RefreshFailed,
        accelerator_types_client,
        refresh_gcp_table,
    )

    out = Path(args.out) if args.out else GCP_TABLE
    source = args.source or ("Compute Engine acceleratorTypes.aggregatedList (project "
                             f"{args.project}) via `mlfleet capacity refresh --cloud gcp`")
    where = args.endpoint or "Compute Engine"
    try:
        table = refresh_gcp_table(accelerator_types_client(args.endpoint), args.project, args.regions, source, out)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise RefreshFailed(f"no Google credentials: {str(exc).rstrip('.')}; run "
                            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
    except google.auth.exceptions.GoogleAuthError as exc:
        raise RefreshFailed(f"Google credentials could not be used: {exc}") from None
    except api_exceptions.GoogleAPIError as exc:
        raise RefreshFailed(f"{where} failed acceleratorTypes.aggregatedList for project {args.project}: "
                            f"{exc}; the table was not changed") from None
    except requests.exceptions.RequestException as exc:
        raise RefreshFailed(f"could not reach {where}: {exc.__class__.__name__}: {exc}; "
                            "the table was not changed") from None
    regions = {zone.rsplit("-", 1)[0] for zone in table["zones"]}
    print(f"{len(table['accelerator_types'])} accelerator types in {len(table['zones'])} zones of "
          f"{len(regions)} regions → {args.out or 'the shipped table'} ({table['generated_at']})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mlfleet.dr.demo import run_demo
    from mlfleet.stacks.app import synthesize
    from mlfleet.stacks.environment import environment_names, load_environment
    from mlfleet.stacks.summary import render_summary

    print("== 1. synthesize every example environment\n")
    result = synthesize([load_environment(n) for n in environment_names()], Path(args.outdir))
    print(render_summary(result))
    print(f"== 2. region-outage drills on the {', '.join(args.env or ['prod', 'hybrid'])} examples, "
          "in the local sandbox\n")
    sys.stdout.flush()
    return run_demo(args.env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlfleet", description="Multi-region ML serving platforms: infrastructure, DR runbooks, runtime.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="synthesize Terraform JSON for environments (one stack per region)")
    which = synth.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", help="a shipped environment (stacks/environment/examples/NAME.yaml)")
    which.add_argument("--config", metavar="FILE", help="an environment file anywhere")
    which.add_argument("--all", action="store_true", help="every shipped environment")
    synth.add_argument("--outdir", default="cdktf.out", help="output directory (default: cdktf.out)")
    synth.set_defaults(handler=_cmd_synth)

    deploy = sub.add_parser("deploy", help="synthesize, then terraform init + apply a region's stacks")
    which = deploy.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", help="a shipped environment")
    which.add_argument("--config", metavar="FILE", help="an environment file anywhere")
    deploy.add_argument("--region", required=True, help="a region of the environment, 'global' or 'gcp-global'")
    deploy.add_argument("--part", choices=("both", "regional", "serving"), default="both",
                        help="a region's stacks: <env>-<region>, then <env>-<region>-serving (default both, in order)")
    deploy.add_argument("--gcp-endpoint", default=None, metavar="URL",
                        help="the Google Cloud API endpoint (default Google's; the sandbox's when rehearsing)")
    deploy.add_argument("--plan", action="store_true", help="terraform plan only")
    deploy.add_argument("--auto-approve", action="store_true", help="apply without asking")
    deploy.add_argument("--outdir", default="cdktf.out")
    deploy.set_defaults(handler=_cmd_deploy)

    schema = sub.add_parser("schema", help="print the JSON Schema of environment files")
    schema.set_defaults(handler=_cmd_schema)

    capacity = sub.add_parser("capacity", help="GPU capacity data")
    capacity_sub = capacity.add_subparsers(dest="capacity_command", required=True, metavar="ACTION")
    refresh = capacity_sub.add_parser(
        "refresh", help="rebuild a GPU offerings table: AWS from EC2, Google Cloud from Compute Engine")
    refresh.add_argument("--cloud", choices=("aws", "gcp"), default="aws",
                         help="which table to rebuild (default: aws)")
    refresh.add_argument("--regions", nargs="+",
                         help="regions to keep (default: all enabled on AWS, all the project sees on GCP)")
    refresh.add_argument("--profile", help="AWS profile (aws)")
    refresh.add_argument("--project", help="Google Cloud project ID whose zones are listed (gcp; required)")
    refresh.add_argument("--endpoint", metavar="URL",
                         help="Compute API endpoint (gcp; default Google's); no credentials are sent to it")
    refresh.add_argument("--out", help="write here instead of the shipped table")
    refresh.add_argument("--source", help="source text recorded in the table")
    refresh.set_defaults(handler=_cmd_capacity_refresh)

    demo = sub.add_parser("demo", help="synthesize the examples, then run a region-outage drill in the sandbox")
    demo.add_argument("--env", action="append", help="an environment to drill; repeat for several "
                                                     "(default: prod, then hybrid)")
    demo.add_argument("--outdir", default="cdktf.out")
    demo.set_defaults(handler=_cmd_demo)

    for register in _registrars():
        register(sub)
    return parser


def _registrars():
    from mlfleet.dr.cli import register as register_dr
    from mlfleet.runtime.cli import register as register_runtime
    from mlfleet.stacks.review.cli import register as register_review

    return [register_runtime, register_dr, register_review]


def main(argv: list[str] | None = None) -> int:
    use_project_node()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MlfleetError as exc:
        print(f"mlfleet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mlfleet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
