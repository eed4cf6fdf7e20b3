"""The cluster examples (SLURM array job, Kubernetes Job) start archbench with command lines
that archbench's own argument parser accepts, so they cannot rot unnoticed."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from archbench.cli import build_parser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cluster"
#: Values for the shell variables the examples use.
SHELL_VARS = {
    "SPEC": "experiments/degradation.yaml",
    "PROFILE": "gpu",
    "ARCHBENCH_DB": "postgresql://u@db/archbench",
    "RESULTS": "/shared/ckpt",
    "gpu": "3",
}


def _expand(line: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return SHELL_VARS[name]

    return re.sub(r"\$\{(\w+)[^}]*\}|\$(\w+)", value, line)


def archbench_lines(text: str) -> list[str]:
    """Every ``archbench ...`` command in shell text, continuations joined, variables set."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("archbench ") and not line.startswith("archbench-"):
            lines.append(_expand(line.removesuffix("&").strip()))
    return lines


def _sources() -> dict[str, str]:
    slurm = (EXAMPLES / "slurm_array.sh").read_text()
    job = yaml.safe_load((EXAMPLES / "k8s_job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    # Only the script that runs, not the comments of the YAML file.
    k8s = "\n".join(container["args"])
    slurm_script = "\n".join(
        line for line in slurm.splitlines() if not line.lstrip().startswith("#")
    )
    return {"slurm": slurm_script, "k8s": k8s}


@pytest.mark.parametrize("name", ["slurm", "k8s"])
def test_cluster_examples_start_workers_archbench_accepts(name: str) -> None:
    lines = archbench_lines(_sources()[name])
    assert lines, f"{name}: no archbench command found"
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line)[1:]
        args = parser.parse_args(argv)  # exits (SystemExit 2) on an unknown option
        assert args.command == "worker"
        assert args.storage.startswith("postgresql://")
        assert args.device == "cuda:3" and args.fuse_seeds
        assert os.path.basename(args.spec) == "degradation.yaml"


def test_the_parser_check_would_catch_a_rotten_option() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(shlex.split(archbench_lines("archbench worker x.yaml --gpu 0")[0])[1:])
