"""checkov, the static analyser of terraform, finds nothing against the repository's terraform.

checkov runs offline (``--skip-download``), so it has no severity data from Prisma Cloud: every
check counts as high, and the rule is that none fails. A check that does not fit this system is
skipped inline in the resource (``# checkov:skip=CKV_...: reason``) and the reason is required.
"""

from __future__ import annotations

import functools
import json
import subprocess
from typing import Any

from tests.support.emulator import tool_executable
from tests.support.terraform import TERRAFORM


@functools.cache
def _checkov_report() -> dict[str, Any]:
    checkov = tool_executable("checkov", "checkov")
    done = subprocess.run(
        [
            checkov,
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    # One framework: one report (checkov answers a list when it ran several).
    return report[0] if isinstance(report, list) else report


def _describe(check: dict[str, Any]) -> str:
    return f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"


def test_checkov_read_every_file() -> None:
    summary = _checkov_report()["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 0


def test_no_check_fails() -> None:
    failed = _checkov_report()["results"]["failed_checks"]
    assert not failed, "\n".join(_describe(check) for check in failed)


def test_every_skipped_check_says_why() -> None:
    skipped = _checkov_report()["results"].get("skipped_checks", [])
    unexplained = [
        _describe(check)
        for check in skipped
        if len(str(check["check_result"].get("suppress_comment", "")).strip()) < 10
    ]
    assert not unexplained, "skipped without a reason:\n" + "\n".join(unexplained)
