"""Every terraform file is valid HCL (terraform itself cannot initialise here)."""

from __future__ import annotations

import pytest

from tests.support.terraform import parse_all, resources, tf_files


def test_there_is_terraform_to_check() -> None:
    assert len(tf_files()) >= 4


@pytest.mark.parametrize("path", [str(p.name) for p in tf_files()])
def test_each_file_parses(path: str) -> None:
    results = {name.rsplit("/", 1)[-1]: result for name, result in parse_all().items()}
    assert "error" not in results[path], results[path].get("error")


def test_no_resource_is_declared_twice() -> None:
    assert resources()  # raises on a duplicate
