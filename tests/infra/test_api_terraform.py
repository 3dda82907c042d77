"""terraform deploys the operator API as the code expects it: its URL is the audience the code
checks, its roles are the code's roles, and only the listed members may invoke it (never the
public), one grant each, on the API alone."""

from __future__ import annotations

import json
import re

import pytest

from hpsteer.domain.roles import Role
from tests.infra.test_terraform_wiring import deployed_functions, resource, tf_locals
from tests.support.terraform import blocks, resources


def _variable(name: str) -> dict[str, object]:
    return next(b[name] for b in blocks("variable") if name in b)


def _invoker_pattern() -> re.Pattern[str]:
    [rule] = _variable("api_invokers")["validation"]  # type: ignore[misc]
    found = re.search(r'regex\("(.+?)", member\)', rule["condition"])
    assert found, rule["condition"]
    return re.compile(found.group(1).replace("\\\\", "\\"))  # HCL's escapes, as terraform reads


@pytest.mark.parametrize(
    "member",
    [
        "user:alice@example.com",
        "group:ops@example.com",
        "serviceAccount:ci@p.iam.gserviceaccount.com",
    ],
)
def test_api_invokers_may_be_people_groups_and_service_accounts(member: str) -> None:
    assert _invoker_pattern().fullmatch(member)


@pytest.mark.parametrize(
    "member", ["allUsers", "allAuthenticatedUsers", "domain:example.com", "user:alice", ""]
)
def test_api_invokers_refuse_the_public_and_members_without_an_email(member: str) -> None:
    assert not _invoker_pattern().fullmatch(member)


def test_each_invoker_is_granted_run_invoker_on_the_api_alone() -> None:
    grant = resource("google_cloud_run_v2_service_iam_member", "api_invoker")
    assert grant["for_each"] == "${toset(var.api_invokers)}"
    assert grant["role"] == "roles/run.invoker"
    assert grant["member"] == "${each.value}"
    assert grant["name"] == "${google_cloudfunctions2_function.api.service_config[0].service}"
    assert _variable("api_invokers")["default"] == []


def test_the_api_knows_its_url_as_the_token_audience_and_its_callers_roles() -> None:
    env = deployed_functions()["api"].env
    assert env["HPSTEER_API_URL"] == "${local.api_url}"
    assert tf_locals()["api_url"] == "${local.function_url_prefix}/api"
    assert env["HPSTEER_API_ROLES"] == "${jsonencode(var.api_roles)}"
    api = resource("google_cloudfunctions2_function", "api")
    assert api["name"] == "api"  # the URL's last segment


def test_the_roles_terraform_accepts_are_the_codes() -> None:
    [rule] = _variable("api_roles")["validation"]  # type: ignore[misc]
    found = re.search(r"contains\((\[.*?\]), role\)", rule["condition"])
    assert found, rule["condition"]
    assert json.loads(found.group(1)) == [role.value for role in Role]


def test_the_api_url_is_an_output() -> None:
    outputs = {name for block in blocks("output") for name in block}
    assert "api_url" in outputs
    assert ("google_cloudfunctions2_function", "api") in resources()
