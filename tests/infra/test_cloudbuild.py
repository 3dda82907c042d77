"""cloudbuild.yaml runs the pipeline the deployment issue names, in order, and applies only on
the main branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    return loaded


def _script(step: dict[str, Any]) -> str:
    return " ".join(str(arg) for arg in step.get("args", []))


def test_steps_run_in_the_order_test_stage_plan_apply(build: dict[str, Any]) -> None:
    assert [step["id"] for step in build["steps"]] == ["test", "stage", "plan", "apply"]


def test_the_test_step_runs_the_readme_test_command_under_ci(build: dict[str, Any]) -> None:
    step = build["steps"][0]
    assert "make test" in _script(step)
    assert "CI=true" in step["env"]


def test_plan_uses_the_staged_functions_and_the_substitutions(build: dict[str, Any]) -> None:
    plan = next(step for step in build["steps"] if step["id"] == "plan")
    script = _script(plan)
    for needed in (
        "terraform fmt -check",
        "terraform init",
        "terraform plan",
        "-out=tfplan",
        "${_ENVIRONMENT}",
    ):
        assert needed in script
    assert "${PROJECT_ID}" in script
    assert {"_ENVIRONMENT", "_REGION", "_TF_STATE_BUCKET"} <= set(build["substitutions"])


def test_apply_happens_on_main_only_and_applies_the_reviewed_plan(build: dict[str, Any]) -> None:
    apply = next(step for step in build["steps"] if step["id"] == "apply")
    script = _script(apply)
    assert '"${BRANCH_NAME}" != "main"' in script
    assert "terraform apply -input=false -auto-approve tfplan" in script


def test_terraform_state_lives_in_a_gcs_backend() -> None:
    versions = (ROOT / "terraform" / "versions.tf").read_text()
    assert 'backend "gcs"' in versions
