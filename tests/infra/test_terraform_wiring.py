"""terraform deploys what the code is: its functions, their triggers, topics, queues, settings, IAM.

terraform cannot plan here (no provider downloads), so the ``.tf`` files are read as data
(:mod:`tests.support.terraform`) and compared with the code itself:

- every entry point decorated in ``functions/<folder>/main.py`` is a function with that entry
  point, on its folder's staged source, running as its folder's service account;
- every (topic -> entry point) of :data:`~hpsteer.runtime.simulation.topology.TRIGGERS` is a
  push subscription to that function with a retry policy and a dead-letter topic;
- the topics are :class:`~hpsteer.domain.messages.Topic`, the queues are
  :mod:`hpsteer.services.command_tasks`' (field by field);
- each Cloud Scheduler body is accepted by the model the function decodes it with;
- every environment variable set is a :class:`~hpsteer.config.Settings` field, and every field
  is either set or listed in :data:`CLOUD_DEFAULT_IS_RIGHT` with a reason (a new field fails
  here until someone decides);
- commands' verifications are a route of the dispatch function (``/verify`` below its URL), not a
  function of their own;
- nothing is publicly invokable, and each invoker may call exactly its functions (Cloud Tasks'
  invoker: dispatch only);
- the publisher, enqueuer, task deleter and project roles are exactly what
  :mod:`tests.infra.code_usage` derives from the code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.adapters.registry import DEFAULT_FACTORIES
from hpsteer.config import Settings
from hpsteer.domain.base import Record
from hpsteer.domain.messages import (
    CommandSweepRequest,
    PriceIngestRequest,
    ReconcileRequest,
    Topic,
    WeatherIngestRequest,
)
from hpsteer.messaging.envelope import pubsub_cloudevent, read_pubsub_message
from hpsteer.ports.tasks import QueueConfig
from hpsteer.runtime.simulation.topology import TRIGGERS
from hpsteer.runtime.task_http import route_paths
from hpsteer.services.command_tasks import VERIFY_QUEUE, dispatch_queue, dispatch_task, verify_task
from hpsteer.services.recheck_tasks import RECHECK_QUEUE, recheck_task
from tests.infra import code_usage
from tests.support.terraform import blocks, resources

FOLDERS = code_usage.function_folders()

CLOUD_DEFAULT_IS_RIGHT: dict[str, str] = {
    "dispatch_require_oidc": "True, the only safe value in the cloud",
    "verify_delay_seconds": "600 s is the verification delay the design assumes",
    "reconcile_page_size": "the page size travels in each ReconcileRequest (shard_size)",
    "max_remediations": "3 remediations before alerting is the design's policy",
    "unreachable_alert_after_minutes": "an hour offline is the design's alert threshold",
    "telemetry_webhook_secret": "secrets.tf creates the secret under the code's default name",
    "telemetry_webhook_previous_versions": "one previous version covers a rotation",
    "telemetry_webhook_tolerance_seconds": "Standard Webhooks' recommended 5 minutes",
    "telemetry_max_clock_skew_seconds": "5 minutes of device clock skew is accepted everywhere",
    "replan_band_k": "0.5 K is the band the backtest re-plans the simulated houses by",
    "drift_replan_cooldown_minutes": "an hour before asking again for the same plan's re-plan",
    "command_stuck_after_minutes": "longer than a task's whole retry schedule, as required",
    "release_ahead_minutes": "2 hours: over the sweep's interval (at most 60 min), as required",
    "local_state_dir": "the local backends only; the cloud keeps no state on disk",
    "price_feed": "live providers are what the cloud asks",
    "weather_feed": "live Open-Meteo is what the cloud asks",
    "price_source_order": "the code's per-area source order is the tested one",
    "entsoe_token_secret": "secrets.tf creates the secret under the code's default name",
    "price_request_max_age_minutes": "3 hours covers the publication window's asks",
    "firestore_emulator_host": "emulators are for tests and local runs only",
    "pubsub_emulator_host": "emulators are for tests and local runs only",
    "tasks_emulator_host": "emulators are for tests and local runs only",
    "bigquery_emulator_host": "emulators are for tests and local runs only",
    "secret_manager_emulator_host": "emulators are for tests and local runs only",
}

TASK_SETTINGS = (
    "HPSTEER_DISPATCH_URL",
    "HPSTEER_VERIFY_URL",
    "HPSTEER_TASKS_SERVICE_ACCOUNT",
    "HPSTEER_TASKS_LOCATION",
)

SCHEDULED_MODELS: dict[Topic, type[Record]] = {
    Topic.PRICE_INGEST_REQUESTS: PriceIngestRequest,
    Topic.WEATHER_INGEST_REQUESTS: WeatherIngestRequest,
    Topic.RECONCILE_REQUESTS: ReconcileRequest,
    Topic.COMMAND_SWEEP_REQUESTS: CommandSweepRequest,
}

TOPICS_NOBODY_USES_YET: dict[str, str] = {
    "command-events": "DESIGN.md's command lifecycle stream for downstream consumers; "
    "no function publishes it yet (the events go to BigQuery command_events)",
}

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


# -- reading the terraform -----------------------------------------------------------------------


def tf_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks("locals"):
        merged.update(block)
    return merged


def tf_variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in blocks("variable") for name, body in block.items()}


def resource(rtype: str, name: str) -> dict[str, Any]:
    found = resources().get((rtype, name))
    assert found is not None, f"no resource {rtype}.{name}"
    return found


def one(body: dict[str, Any], block: str) -> dict[str, Any]:
    """The single nested ``block`` of ``body``."""
    nested = body.get(block)
    assert isinstance(nested, list), f"no {block} block"
    assert len(nested) == 1, f"expected one {block} block"
    inner: dict[str, Any] = nested[0]
    return inner


def keyed(reference: str, collection: str) -> str:
    """The key of ``collection["key"]`` in ``reference`` (a terraform expression)."""
    match = re.search(re.escape(collection) + r'\["([^"]+)"\]', reference)
    assert match, f"{reference!r} does not index {collection}"
    return match.group(1)


def toset_literal(expression: str) -> set[str]:
    """The strings of ``toset(["a", "b"])``."""
    match = re.fullmatch(r"\$\{toset\((\[.*\])\)\}", expression)
    assert match, f"{expression!r} is not toset() of a literal list"
    return set(json.loads(match.group(1)))


@dataclass(frozen=True)
class Deployed:
    """One deployed function as terraform declares it."""

    key: str
    entry_point: str
    source_folder: str
    account_folder: str
    runtime: str
    ingress: str
    env: dict[str, Any]
    timeout: Any


def _resolve(value: Any, each: dict[str, Any]) -> Any:
    """``${each.value.x}`` replaced by the entry's ``x``; other values unchanged."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{each\.value\.(\w+)\}", value)
        if match:
            return each[match.group(1)]
    return value


def deployed_functions() -> dict[str, Deployed]:
    found: dict[str, Deployed] = {}
    the_locals = tf_locals()
    for (rtype, name), body in resources().items():
        if rtype != "google_cloudfunctions2_function":
            continue
        build, service = one(body, "build_config"), one(body, "service_config")
        storage = one(one(build, "source"), "storage_source")
        entries: dict[str, dict[str, Any]]
        if "for_each" in body:
            assert body["for_each"] == "${local.functions}"
            entries = the_locals["functions"]
        else:
            entries = {name: {}}
        for key, each in entries.items():
            raw_env = service["environment_variables"]
            own = re.fullmatch(r"\$\{merge\(local\.common_env, local\.(\w+)\)\}", raw_env)
            if raw_env == "${merge(local.common_env, each.value.env)}":
                env = {**the_locals["common_env"], **each["env"]}
            elif own is not None:  # a function of its own with settings of its own (the API)
                env = {**the_locals["common_env"], **the_locals[own.group(1)]}
            else:
                assert raw_env == "${local.common_env}", raw_env
                env = dict(the_locals["common_env"])
            object_ref = _resolve(storage["object"], each)
            account_ref = service["service_account_email"]
            folder = str(each.get("folder"))
            found[key] = Deployed(
                key=key,
                entry_point=_resolve(build["entry_point"], each),
                source_folder=(
                    folder
                    if "each.value.folder" in object_ref
                    else keyed(object_ref, "google_storage_bucket_object.function_source")
                ),
                account_folder=(
                    folder
                    if "each.value.folder" in account_ref
                    else keyed(account_ref, "google_service_account.function")
                ),
                runtime=build["runtime"],
                ingress=service["ingress_settings"],
                env=env,
                timeout=_resolve(service["timeout_seconds"], each),
            )
    return found


def function_url(key: str) -> str:
    """The reference terraform uses for the function ``key``'s URL."""
    if key in tf_locals()["functions"]:
        return f'${{google_cloudfunctions2_function.fn["{key}"].url}}'
    return f"${{google_cloudfunctions2_function.{key}.url}}"


def iam_resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for (rtype, name), body in resources().items():
        if "iam" in rtype or "role" in body:
            yield rtype, name, body


# -- functions ---------------------------------------------------------------------------------


def test_every_entry_point_of_every_folder_is_a_function_on_that_folders_source() -> None:
    expected = {(folder, ep) for folder in FOLDERS for ep in code_usage.entry_points(folder)}
    deployed = deployed_functions()

    assert {(d.source_folder, d.entry_point) for d in deployed.values()} == expected
    assert len(deployed) == len(expected)
    assert {d.runtime for d in deployed.values()} == {"python311"}


def test_each_function_runs_as_its_folders_service_account() -> None:
    for function in deployed_functions().values():
        assert function.account_folder == function.source_folder, function.key
    accounts = resource("google_service_account", "function")
    assert sorted(toset_literal(accounts["for_each"])) == FOLDERS


def test_service_account_ids_fit_googles_limit_in_every_environment() -> None:
    account_id = resource("google_service_account", "function")["account_id"]
    assert account_id == 'hps-${var.environment}-${replace(each.value, "_", "-")}'
    environments = ["dev", "staging", "prod"]
    others = [
        resource("google_service_account", name)["account_id"]
        for name in ("tasks_invoker", "pubsub_push", "webhook_gateway")
    ]
    for env in environments:
        ids = [f"hps-{env}-{folder.replace('_', '-')}" for folder in FOLDERS]
        ids += [other.replace("${var.environment}", env) for other in others]
        for made in ids:
            assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", made), made


def test_sources_are_the_staged_folders_zipped_and_named_by_their_md5() -> None:
    archive = resources("data")[("archive_file", "function_source")]
    assert archive["for_each"] == "${local.function_folders}"
    assert archive["source_dir"].endswith("/../build/stage/${each.value}")
    obj = resource("google_storage_bucket_object", "function_source")
    assert "${data.archive_file.function_source[each.value].output_md5}" in obj["name"]
    staged = {d.source_folder for d in deployed_functions().values()}
    assert staged == set(FOLDERS)

    bucket = resource("google_storage_bucket", "function_sources")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert one(bucket, "versioning")["enabled"] is True


def test_the_dispatch_url_is_the_dispatch_functions_url() -> None:
    the_locals = tf_locals()
    prefix = "https://${var.region}-${var.project}.cloudfunctions.net"
    assert the_locals["function_url_prefix"] == prefix
    assert the_locals["function_name"] == (
        '${{for key, fn in local.functions : key => replace(key, "_", "-")}}'
    )
    assert "dispatch" in the_locals["functions"]
    assert the_locals["dispatch_url"] == "${local.function_url_prefix}/dispatch"


def test_the_verify_url_is_a_route_of_the_dispatch_function_not_a_function_of_its_own() -> None:
    the_locals = tf_locals()
    assert "verify" not in the_locals["functions"]
    assert the_locals["verify_url"] == "${local.dispatch_url}/verify"
    # The dispatch entry point routes that URL's path to the verify handler, and the dispatch
    # URL's own to the dispatch handler, whichever form of the path the platform passes on.
    dispatch_url = "https://europe-west1-acme.cloudfunctions.net/dispatch"
    verify_url = the_locals["verify_url"].replace("${local.dispatch_url}", dispatch_url)
    assert route_paths(verify_url, dispatch_url) == {"/verify", "/dispatch/verify"}
    assert route_paths(dispatch_url, dispatch_url) == {"/", "/dispatch"}


def test_commands_and_verifications_carry_a_token_for_the_dispatch_functions_own_url() -> None:
    # Cloud Run admits an OIDC token whose audience is the service's URL; Cloud Tasks' default
    # audience is the whole task URL, which for a verification ends in /verify.
    settings = Settings(
        dispatch_url="https://europe-west1-acme.cloudfunctions.net/dispatch",
        verify_url="https://europe-west1-acme.cloudfunctions.net/dispatch/verify",
        tasks_service_account="tasks-invoker@acme.iam.gserviceaccount.com",
    )
    at = datetime(2025, 1, 1, tzinfo=UTC)
    send = dispatch_task(settings, "viessmann", "t1", "d1", "c1", at)
    verify = verify_task(settings, "t2", "d1", "c1", at)
    assert (send.url, verify.url) == (settings.dispatch_url, settings.verify_url)
    assert send.oidc_audience == verify.oidc_audience == settings.dispatch_url
    assert (
        send.oidc_service_account == verify.oidc_service_account == settings.tasks_service_account
    )


def test_only_the_telemetry_webhook_and_the_api_accept_traffic_from_outside_google_cloud() -> None:
    # Manufacturers' webhooks (through API Gateway) and operators' tools (IAM: api_invokers) come
    # from outside; everything else is called by Pub/Sub and Cloud Tasks only.
    outside = {d.key for d in deployed_functions().values() if d.ingress != "ALLOW_INTERNAL_ONLY"}
    assert outside == {"telemetry_webhook", "api"}


def test_pushed_functions_ack_deadline_is_their_timeout() -> None:
    push = resource("google_pubsub_subscription", "push")
    assert push["ack_deadline_seconds"] == (
        "${min(local.functions[each.value.function].timeout, 600)}"
    )
    for sub in tf_locals()["push_subscriptions"].values():
        assert deployed_functions()[sub["function"]].timeout <= 600


# -- Pub/Sub -------------------------------------------------------------------------------------


def test_topics_are_the_codes_topics() -> None:
    assert sorted(tf_locals()["topics"]) == sorted(topic.value for topic in Topic)


def test_every_topic_is_published_or_pushed_to_a_function_except_those_listed() -> None:
    used = {topic.value for folder in FOLDERS for topic in code_usage.usage(folder).publishes}
    used |= {trigger.topic.value for trigger in TRIGGERS}
    assert {topic.value for topic in Topic} - used == set(TOPICS_NOBODY_USES_YET)


def test_every_trigger_is_a_push_subscription_to_its_entry_point() -> None:
    deployed = deployed_functions()
    subscriptions = tf_locals()["push_subscriptions"]
    declared = {
        (
            sub["topic"],
            deployed[sub["function"]].source_folder,
            deployed[sub["function"]].entry_point,
        )
        for sub in subscriptions.values()
    }
    expected = {(t.topic.value, t.function, t.entry_point) for t in TRIGGERS}

    assert declared == expected
    assert len(subscriptions) == len(TRIGGERS)
    for name, sub in subscriptions.items():
        assert name == f"{sub['topic']}-{sub['function'].replace('_', '-')}"


def test_push_subscriptions_carry_an_oidc_token_retry_backoff_and_a_dead_letter_topic() -> None:
    push = resource("google_pubsub_subscription", "push")
    assert push["for_each"] == "${local.push_subscriptions}"
    assert push["topic"] == "${google_pubsub_topic.flow[each.value.topic].id}"
    config = one(push, "push_config")
    url = "${google_cloudfunctions2_function.fn[each.value.function].url}"
    assert config["push_endpoint"] == url
    token = one(config, "oidc_token")
    assert token["service_account_email"] == "${google_service_account.pubsub_push.email}"
    assert token["audience"] == url
    retry = one(push, "retry_policy")
    assert retry["minimum_backoff"]
    assert retry["maximum_backoff"]
    dead = one(push, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter[each.value.topic].id}"
    assert dead["max_delivery_attempts"] == "${var.pubsub_max_delivery_attempts}"
    # Every pushed function is in the fn resource (the push endpoint indexes it).
    functions = tf_locals()["functions"]
    assert all(s["function"] in functions for s in tf_locals()["push_subscriptions"].values())


def test_dead_letters_are_kept_seven_days_and_the_pubsub_agent_may_forward_them() -> None:
    the_locals = tf_locals()
    assert the_locals["dead_letter_sources"] == (
        "${toset([for sub in local.push_subscriptions : sub.topic])}"
    )
    topic = resource("google_pubsub_topic", "dead_letter")
    assert topic["name"] == "${each.value}-dead-letter"
    inspect = resource("google_pubsub_subscription", "dead_letter")
    assert inspect["for_each"] == "${local.dead_letter_sources}"
    assert inspect["topic"] == "${google_pubsub_topic.dead_letter[each.value].id}"
    assert inspect["message_retention_duration"] == "604800s"
    assert "push_config" not in inspect

    agent = the_locals["pubsub_service_agent"]
    assert agent == (
        "serviceAccount:service-${data.google_project.this.number}"
        "@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    publisher = resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert publisher["for_each"] == "${local.dead_letter_sources}"
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter[each.value].id}"
    assert (publisher["role"], publisher["member"]) == (
        "roles/pubsub.publisher",
        "${local.pubsub_service_agent}",
    )
    subscriber = resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert subscriber["for_each"] == "${local.push_subscriptions}"
    assert subscriber["subscription"] == "${google_pubsub_subscription.push[each.key].id}"
    assert (subscriber["role"], subscriber["member"]) == (
        "roles/pubsub.subscriber",
        "${local.pubsub_service_agent}",
    )


# -- Cloud Tasks ---------------------------------------------------------------------------------


def _as_terraform(config: QueueConfig) -> dict[str, Any]:
    retry, rates = config.retry, config.rate_limits

    def seconds(value: Any) -> str:
        return f"{int(value.total_seconds())}s"

    return {
        "max_dispatches_per_second": rates.max_dispatches_per_second,
        "max_concurrent_dispatches": rates.max_concurrent_dispatches,
        "max_attempts": retry.max_attempts,
        "min_backoff": seconds(retry.min_backoff),
        "max_backoff": seconds(retry.max_backoff),
        "max_doublings": retry.max_doublings,
        "max_retry_duration": (
            "0s" if retry.max_retry_duration is None else seconds(retry.max_retry_duration)
        ),
    }


def test_queues_are_the_codes_queues_field_by_field() -> None:
    expected = [dispatch_queue(m) for m in DEFAULT_FACTORIES] + [VERIFY_QUEUE, RECHECK_QUEUE]
    declared = tf_locals()["task_queues"]

    assert sorted(declared) == sorted(q.name for q in expected)
    for queue in expected:
        assert declared[queue.name] == _as_terraform(queue), queue.name


def test_queue_resource_takes_every_field_from_its_entry() -> None:
    queue = resource("google_cloud_tasks_queue", "command")
    assert queue["for_each"] == "${local.task_queues}"
    assert queue["name"] == "${each.key}"
    for block in ("rate_limits", "retry_config"):
        for field, value in one(queue, block).items():
            assert value == "${each.value." + field + "}", (block, field)


# -- Cloud Scheduler -----------------------------------------------------------------------------


def _substitute_variables(value: Any) -> Any:
    """A parsed HCL value with ``${var.x}`` replaced by the variable's default."""
    if isinstance(value, dict):
        return {key: _substitute_variables(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute_variables(item) for item in value]
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{var\.(\w+)\}", value)
        if match:
            return tf_variables()[match.group(1)]["default"]
        assert "${" not in value, f"cannot render {value!r}"
    return value


def scheduler_bodies() -> dict[str, tuple[Topic, bytes]]:
    job = resource("google_cloud_scheduler_job", "tick")
    assert job["for_each"] == "${local.scheduler_jobs}"
    target = one(job, "pubsub_target")
    assert target["topic_name"] == "${google_pubsub_topic.flow[each.value.topic].id}"
    assert target["data"] == "${base64encode(jsonencode(each.value.body))}"
    # jsonencode() as terraform writes it: compact, keys as given.
    return {
        name: (
            Topic(spec["topic"]),
            json.dumps(_substitute_variables(spec["body"]), separators=(",", ":")).encode(),
        )
        for name, spec in tf_locals()["scheduler_jobs"].items()
    }


def test_scheduled_topics_are_the_requests_functions_wait_for() -> None:
    topics = {topic for topic, _ in scheduler_bodies().values()}
    assert topics == set(SCHEDULED_MODELS)
    pushed = {trigger.topic for trigger in TRIGGERS}
    assert topics <= pushed


@pytest.mark.parametrize("job", sorted(scheduler_bodies()))
def test_each_scheduler_body_is_accepted_by_the_functions_decoding(job: str) -> None:
    topic, body = scheduler_bodies()[job]
    event = pubsub_cloudevent(
        topic=topic.value,
        project="hpsteer-test",
        message_id="1",
        data=body,
        attributes={},
        publish_time=datetime(2025, 2, 24, 12, 15, tzinfo=UTC),
    )
    request = SCHEDULED_MODELS[topic].parse_json(read_pubsub_message(event).data)

    assert getattr(request, "scheduled_at", None) is None  # the handler uses the publish minute
    if isinstance(request, PriceIngestRequest):
        assert [area.value for area in request.areas] == tf_variables()["price_areas"]["default"]


def test_jobs_run_on_their_schedules_in_a_named_time_zone() -> None:
    jobs = tf_locals()["scheduler_jobs"]
    by_topic = {spec["topic"]: spec for spec in jobs.values()}
    prices = by_topic[Topic.PRICE_INGEST_REQUESTS.value]
    assert prices["time_zone"] == "Europe/Berlin"
    minutes, hours = prices["schedule"].split()[:2]
    assert hours == "13-15"
    assert len(minutes.split(",")) >= 2
    assert by_topic[Topic.WEATHER_INGEST_REQUESTS.value]["schedule"].split()[1] == "*/3"
    assert by_topic[Topic.RECONCILE_REQUESTS.value]["schedule"].startswith(
        "*/${var.reconcile_interval_minutes} "
    )
    assert all(spec["time_zone"] for spec in jobs.values())


def test_reconcile_interval_defaults_to_the_codes_and_is_bounded_like_it() -> None:
    variable = tf_variables()["reconcile_interval_minutes"]
    field = Settings.model_fields["reconcile_interval_minutes"]
    assert variable["default"] == field.default
    condition = variable["validation"][0]["condition"]
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in field.metadata}
    assert f">= {bounds['Ge']}" in condition
    assert f"<= {bounds['Le']}" in condition


# -- settings ------------------------------------------------------------------------------------


def _field_of(variable: str) -> str:
    assert variable.startswith("HPSTEER_"), variable
    return variable.removeprefix("HPSTEER_").lower()


def test_every_environment_variable_set_is_a_settings_field() -> None:
    for function in deployed_functions().values():
        for variable in function.env:
            assert _field_of(variable) in Settings.model_fields, (function.key, variable)


def test_every_settings_field_is_set_or_its_cloud_default_is_declared_right() -> None:
    set_somewhere = {_field_of(v) for d in deployed_functions().values() for v in d.env}
    fields = set(Settings.model_fields)

    assert set(CLOUD_DEFAULT_IS_RIGHT) <= fields, "a listed field no longer exists"
    assert not set_somewhere & set(CLOUD_DEFAULT_IS_RIGHT), "set, yet listed as default"
    assert fields - set_somewhere - set(CLOUD_DEFAULT_IS_RIGHT) == set(), "unclassified"


def test_every_function_runs_on_the_cloud_backends_of_this_deployment() -> None:
    for function in deployed_functions().values():
        env = function.env
        assert env["HPSTEER_BACKEND"] == "gcp"
        assert env["HPSTEER_PROJECT"] == "${var.project}"
        assert env["HPSTEER_REGION"] == "${var.region}"
        assert env["HPSTEER_ENVIRONMENT"] == "${var.environment}"
        assert env["HPSTEER_BIGQUERY_DATASET"] == (
            "${google_bigquery_dataset.analytics.dataset_id}"
        )
        assert env["HPSTEER_FIRESTORE_DATABASE"] == "${google_firestore_database.main.name}"


def test_functions_that_enqueue_or_take_tasks_know_the_urls_and_the_invoker() -> None:
    enqueuing = {folder for folder in FOLDERS if code_usage.usage(folder).enqueues}
    for function in deployed_functions().values():
        needs = function.source_folder in enqueuing or function.key == "dispatch"
        if not needs:
            assert not set(TASK_SETTINGS) & set(function.env), function.key
            continue
        assert function.env["HPSTEER_DISPATCH_URL"] == "${local.dispatch_url}", function.key
        assert function.env["HPSTEER_VERIFY_URL"] == "${local.verify_url}", function.key
        assert function.env["HPSTEER_TASKS_SERVICE_ACCOUNT"] == (
            "${google_service_account.tasks_invoker.email}"
        )
        assert function.env["HPSTEER_TASKS_LOCATION"] == "${var.region}"


def test_a_recheck_task_goes_to_the_recheck_functions_own_url_which_reconcile_knows() -> None:
    the_locals = tf_locals()
    assert the_locals["recheck_url"] == "${local.function_url_prefix}/recheck"
    functions = deployed_functions()
    recheck = functions["recheck"]
    assert (recheck.source_folder, recheck.entry_point) == ("reconcile", "recheck")
    for key in ("reconcile", "recheck"):  # the maker of the tasks, and their audience
        assert functions[key].env["HPSTEER_RECHECK_URL"] == "${local.recheck_url}", key
    # The recheck judges "superseded" by the run's interval, as the scheduler ticks.
    assert recheck.env["HPSTEER_RECONCILE_INTERVAL_MINUTES"] == (
        "${tostring(var.reconcile_interval_minutes)}"
    )
    settings = Settings(recheck_url="https://europe-west1-acme.cloudfunctions.net/recheck")
    tick = datetime(2025, 1, 15, 7, 50, tzinfo=UTC)
    task = recheck_task(settings, "d1", tick, tick + timedelta(minutes=1))
    assert (task.queue, task.url, task.oidc_audience) == (
        RECHECK_QUEUE.name,
        settings.recheck_url,
        settings.recheck_url,
    )


def test_reconcile_knows_the_interval_it_is_scheduled_at() -> None:
    env = deployed_functions()["reconcile"].env
    assert env["HPSTEER_RECONCILE_INTERVAL_MINUTES"] == (
        "${tostring(var.reconcile_interval_minutes)}"
    )


# -- who may invoke ------------------------------------------------------------------------------


def test_no_iam_grant_anywhere_names_all_users() -> None:
    for rtype, name, body in iam_resources():
        members = [body.get("member", ""), *list(body.get("members", []))]
        for member in members:
            assert not any(public in str(member) for public in PUBLIC_MEMBERS), (rtype, name)


def _invoker_grants() -> dict[str, set[str]]:
    """Invoker account reference -> the function keys it may invoke."""
    grants: dict[str, set[str]] = {}
    the_locals = tf_locals()
    for rtype, name, body in iam_resources():
        if body.get("role") not in ("roles/run.invoker", "roles/cloudfunctions.invoker"):
            continue
        assert rtype == "google_cloud_run_v2_service_iam_member", (rtype, name)
        target = body["name"]
        if body.get("for_each") == "${toset(var.api_invokers)}":  # people: one grant each
            assert target == "${google_cloudfunctions2_function.api.service_config[0].service}"
            assert body["member"] == "${each.value}"
            grants.setdefault("var.api_invokers", set()).add("api")
            continue
        if "for_each" in body:
            keys_expr = body["for_each"]
            if keys_expr == "${local.pushed_functions}":
                keys = {s["function"] for s in the_locals["push_subscriptions"].values()}
            else:
                keys = toset_literal(keys_expr)
            expected = "${google_cloudfunctions2_function.fn[each.value].service_config[0].service}"
            assert target == expected
        else:
            match = re.fullmatch(
                r"\$\{google_cloudfunctions2_function\.(\w+)\.service_config\[0\]\.service\}",
                target,
            )
            assert match, target
            keys = {match.group(1)}
        grants.setdefault(body["member"], set()).update(keys)
    return grants


def test_each_invoker_account_may_call_exactly_its_functions() -> None:
    pushed = {d.key for d in deployed_functions().values() if d.entry_point in _pushed_entries()}
    assert _invoker_grants() == {
        "serviceAccount:${google_service_account.tasks_invoker.email}": {"dispatch", "recheck"},
        "serviceAccount:${google_service_account.pubsub_push.email}": pushed,
        "serviceAccount:${google_service_account.webhook_gateway.email}": {"telemetry_webhook"},
        "var.api_invokers": {"api"},
    }


def _pushed_entries() -> set[str]:
    return {trigger.entry_point for trigger in TRIGGERS}


# -- least privilege: the grants are what the code uses ------------------------------------------


def test_each_function_publishes_exactly_on_the_topics_its_code_publishes() -> None:
    declared = tf_locals()["function_publishes"]
    assert sorted(declared) == FOLDERS
    for folder in FOLDERS:
        expected = sorted(t.value for t in code_usage.usage(folder).publishes)
        assert sorted(declared[folder]) == expected, folder


def test_task_grants_are_exactly_the_folders_that_enqueue_or_delete_tasks() -> None:
    the_locals = tf_locals()
    usage = {folder: code_usage.usage(folder) for folder in FOLDERS}
    assert sorted(the_locals["task_enqueuers"]) == [f for f in FOLDERS if usage[f].enqueues]
    assert sorted(the_locals["task_deleters"]) == [f for f in FOLDERS if usage[f].deletes_tasks]


def test_project_roles_are_exactly_the_ones_the_imported_clients_need() -> None:
    declared = tf_locals()["function_project_roles"]
    assert sorted(declared) == FOLDERS
    for folder in FOLDERS:
        assert sorted(declared[folder]) == sorted(code_usage.usage(folder).project_roles), folder


EXPECTED_GRANTS: dict[tuple[str, str], tuple[str, str, str]] = {
    # resource -> (role, member, for_each)
    ("google_project_iam_member", "function"): (
        "${each.value.role}",
        "serviceAccount:${google_service_account.function[each.value.folder].email}",
        "${local.project_grants}",
    ),
    ("google_pubsub_topic_iam_member", "function_publisher"): (
        "roles/pubsub.publisher",
        "serviceAccount:${google_service_account.function[each.value.folder].email}",
        "${local.publisher_grants}",
    ),
    ("google_cloud_tasks_queue_iam_member", "function_enqueuer"): (
        "roles/cloudtasks.enqueuer",
        "serviceAccount:${google_service_account.function[each.value.folder].email}",
        "${local.enqueuer_grants}",
    ),
    ("google_cloud_tasks_queue_iam_member", "function_task_deleter"): (
        "roles/cloudtasks.taskDeleter",
        "serviceAccount:${google_service_account.function[each.value.folder].email}",
        "${local.deleter_grants}",
    ),
    ("google_service_account_iam_member", "enqueuer_acts_as_invoker"): (
        "roles/iam.serviceAccountUser",
        "serviceAccount:${google_service_account.function[each.value].email}",
        "${toset(local.task_enqueuers)}",
    ),
}


def test_grants_to_function_accounts_come_only_from_the_code_derived_locals() -> None:
    for key, (role, member, for_each) in EXPECTED_GRANTS.items():
        body = resource(*key)
        assert (body["role"], body["member"], body["for_each"]) == (role, member, for_each), key
    acts_as = resource("google_service_account_iam_member", "enqueuer_acts_as_invoker")
    assert acts_as["service_account_id"] == "${google_service_account.tasks_invoker.name}"

    # Any other project, topic, queue or actAs grant to a function account is one the code
    # does not justify (secrets.tf and bigquery.tf grant on their own resources).
    to_functions = {
        (rtype, name)
        for rtype, name, body in iam_resources()
        if "google_service_account.function[" in str(body.get("member", ""))
        and rtype.startswith(
            ("google_project", "google_pubsub", "google_cloud_tasks", "google_service_account")
        )
    }
    assert to_functions == set(EXPECTED_GRANTS)


def test_grant_locals_expand_the_code_derived_lists() -> None:
    the_locals = tf_locals()
    assert "local.function_publishes" in the_locals["publisher_grants"]
    assert "local.task_enqueuers" in the_locals["enqueuer_grants"]
    assert "keys(local.task_queues)" in the_locals["enqueuer_grants"]
    assert "local.task_deleters" in the_locals["deleter_grants"]
    assert "local.function_project_roles" in the_locals["project_grants"]
