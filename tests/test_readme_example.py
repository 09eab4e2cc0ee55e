"""The README's constructs example runs as written and builds what it says."""
from __future__ import annotations

import json
import re
from pathlib import Path

from helpers.template import Template

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_constructs_example_synthesizes_a_cluster_a_reserved_pool_and_granted_roles(tmp_path):
    section = README.read_text().split("## Constructs as a library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the README lost its constructs example"
    # The CDK resolves a relative outdir in its own (node) process, whose directory is fixed when it
    # starts: point the example's outdir here instead.
    source = code.group(1).replace('outdir="cdktf.out"', f'outdir="{tmp_path / "cdktf.out"}"')
    assert source != code.group(1), "the example no longer writes to cdktf.out"
    exec(compile(source, "README.md", "exec"), {})
    template = Template(json.loads((tmp_path / "cdktf.out/stacks/ml-us-east-1/cdk.tf.json").read_text()))
    groups = {g["node_group_name"] for g in template.resources("aws_eks_node_group").values()}
    assert groups == {"system", "inference-gpu"}
    template.has_resource_properties("aws_launch_template", {"capacity_reservation_specification": {
        "capacity_reservation_target": {"capacity_reservation_id": "cr-0123456789abcdef0"}}})
    serving = next(p for p in template.resources("aws_iam_role_policy").values() if "serving" in p["name"])
    sids = [s["Sid"] for s in json.loads(serving["policy"])["Statement"]]
    assert sids[:2] == ["ReadApproved", "DecryptArtifacts"]
