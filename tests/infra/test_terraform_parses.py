"""Every terraform file is valid HCL and formatted as ``terraform fmt`` formats it (terraform
itself cannot initialise here: no provider downloads; ``fmt`` needs none)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.terraform import TERRAFORM, parse_all, resources, tf_files


def test_there_is_terraform_to_check() -> None:
    assert len(tf_files()) >= 4


@pytest.mark.parametrize("path", [str(p.name) for p in tf_files()])
def test_each_file_parses(path: str) -> None:
    results = {name.rsplit("/", 1)[-1]: result for name, result in parse_all().items()}
    assert "error" not in results[path], results[path].get("error")


def test_no_resource_is_declared_twice() -> None:
    assert resources()  # raises on a duplicate


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary on this machine")
def test_every_file_is_formatted_as_terraform_fmt_formats_it() -> None:
    """cloudbuild's plan step runs the same check before ``terraform init``."""
    checked = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-no-color"],
        cwd=TERRAFORM,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, f"not formatted: {checked.stdout.split()}"
