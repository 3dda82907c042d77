"""Settings from the environment (``HPSTEER_*``), validated once at start.

``HPSTEER_BACKEND=local`` (the default) wires the in-process backends: no cloud account needed.
``HPSTEER_BACKEND=gcp`` wires Firestore, Pub/Sub, Cloud Tasks, BigQuery and Secret Manager in
``HPSTEER_PROJECT``. The Google clients honour the official emulator variables
(``FIRESTORE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``); the stand-ins for Cloud Tasks, BigQuery
and Secret Manager are reached through ``HPSTEER_*_EMULATOR_HOST``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

LOCAL_PROJECT = "hpsteer-local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPSTEER_", extra="ignore", frozen=True)

    backend: Literal["local", "gcp"] = "local"
    project: str = Field(default=LOCAL_PROJECT, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    region: str = "europe-west1"
    environment: Literal["dev", "staging", "prod"] = "dev"
    firestore_database: str = "(default)"
    bigquery_dataset: str = Field(default="hpsteer", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
    bigquery_location: str = "EU"
    tasks_location: str | None = None
    """Cloud Tasks location; the region when unset."""
    dispatch_url: str = "http://127.0.0.1:8080/dispatch"
    """The URL Cloud Tasks calls for a command (the dispatch function's URL in the cloud)."""
    verify_url: str = "http://127.0.0.1:8080/verify"
    """The URL Cloud Tasks calls to verify a command (the dispatch function's verify route)."""
    recheck_url: str = "http://127.0.0.1:8080/recheck"
    """The URL Cloud Tasks calls to reconcile one device again after its poll failed (the
    ``recheck`` function's URL in the cloud; :mod:`hpsteer.services.recheck`)."""
    tasks_service_account: str | None = None
    """Service account whose OIDC token Cloud Tasks attaches to dispatch calls; dispatch accepts
    tokens of this account only."""
    dispatch_require_oidc: bool = True
    """With the gcp backend, dispatch and verify refuse a call without a valid OIDC token of
    ``tasks_service_account`` whose audience is the called URL (401/403, before the body); with
    no account configured they refuse every call (fail closed)."""
    verify_delay_seconds: int = Field(default=600, ge=30, le=3600)
    """How long after a manufacturer accepted a command its verification reads the device."""
    reconcile_interval_minutes: int = Field(default=10, ge=5, le=15)
    """How often Cloud Scheduler asks for reconciliation (terraform uses the same value)."""
    reconcile_page_size: int = Field(default=200, ge=1, le=1000)
    """Devices per reconcile shard (one page of the device query)."""
    reconcile_workers: int = Field(default=16, ge=1, le=64)
    """Devices of one reconcile page reconciled at once, on as many threads: a page waits on the
    manufacturers' round trips almost all the time. 1 reconciles them one after another (the
    local runtime's simulated fleet does: its seeded faults follow the order of the calls)."""
    max_remediations: int = Field(default=3, ge=1, le=20)
    """Remediations of one drift before reconciliation alerts and stops remediating."""
    unreachable_alert_after_minutes: int = Field(default=60, ge=10, le=1440)
    """A device unreachable this long raises an alert."""
    telemetry_webhook_secret: str = "telemetry-webhook-secret"
    """Secret holding the telemetry webhook's ``whsec_<base64>`` signing secret."""
    telemetry_webhook_previous_versions: int = Field(default=1, ge=0, le=10)
    """Numbered versions below ``latest`` still accepted while the secret rotates."""
    telemetry_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    """A webhook whose ``webhook-timestamp`` is further off than this is refused (400)."""
    telemetry_max_clock_skew_seconds: int = Field(default=300, ge=0, le=3600)
    """A telemetry sample observed further in the future than this is refused."""
    replan_band_k: float = Field(default=0.5, gt=0, le=5)
    """A measured indoor temperature further than this from the current plan's prediction asks
    for a re-plan from the measured state (:mod:`hpsteer.domain.plan_track`; the backtest's
    band)."""
    drift_replan_cooldown_minutes: int = Field(default=60, ge=10, le=1440)
    """After asking for a drift re-plan, how long the same plan may stay current before a
    measurement off it asks again."""
    identify_houses: bool = True
    """Optimize plans each house on what its measured history identifies
    (:mod:`hpsteer.services.plan_inputs`); off, every device is planned on its registered
    parameters with the envelope equal to the measured air, and no history is read (an operator
    switch, and the comparison the simulation's figures are checked against)."""
    identify_history_days: int = Field(default=7, ge=1, le=60)
    """How many days of each device's ``telemetry_history`` optimize reads (one query per shard)
    to identify its house before planning (:mod:`hpsteer.services.plan_inputs`)."""
    optimize_io_workers: int = Field(default=1, ge=1, le=64)
    """Devices of one optimize shard whose reads and writes run at once, on as many threads
    (:func:`hpsteer.services.optimize.plan_shard`: each prepares, hands its solve to the solver
    pool, then writes and releases its plan). 1, the default and what the local runtime keeps,
    reads every device in turn, solves them together and writes them in turn, so a seeded
    simulation writes its plans, rows and tasks in one order; terraform sets 16 for
    ``optimize_shard``, whose round trips would otherwise wait one after another."""
    release_ahead_minutes: int = Field(default=120, ge=75, le=2880)
    """How far ahead of its instant a plan's mode change becomes a command and a task
    (:mod:`hpsteer.services.outbox`): a release makes commands of the changes due within this
    much time and leaves the later ones in the plan's outbox, for the sweep to release as they
    come within reach. Re-plans come every few hours and move the far changes, so a change
    released only when it is near is rarely superseded. Longer than the sweep's interval (30
    minutes in terraform, at most 60) plus a sweep's retries, so every change is released while
    still ahead of its instant."""
    sweep_workers: int = Field(default=1, ge=1, le=64)
    """Due plan releases the command sweep settles at once, on as many threads: each waits on
    a few store reads and Cloud Tasks calls (:func:`hpsteer.services.outbox.sweep`). 1, the
    default and what the local runtime keeps, settles them in turn so a seeded simulation
    creates its commands and tasks in one order; terraform sets 16 for ``sweep_commands``, the
    one instance that sweeps the whole fleet every 30 minutes."""
    command_stuck_after_minutes: int = Field(default=60, ge=5, le=1440)
    """The sweep re-enqueues a command that has not moved for this long (longer than a task's
    whole retry schedule, so it only catches tasks that were lost)."""
    local_state_dir: Path | None = None
    """Where the local backends persist (SQLite files, secrets); in memory when unset."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    trace_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of traces exported to Cloud Trace (errors always are); 0 turns tracing off."""

    price_feed: Literal["live", "replay"] = "live"
    """``live`` asks the providers; ``replay`` serves the bundled historical files."""
    weather_feed: Literal["live", "replay"] = "live"
    """``live`` asks Open-Meteo; ``replay`` serves the bundled historical weather files."""
    price_source_order: dict[str, list[str]] = Field(default_factory=dict)
    """Per-area order of price sources, overriding the defaults, e.g.
    ``HPSTEER_PRICE_SOURCE_ORDER='{"SE3": ["entsoe", "energycharts"]}'``."""
    entsoe_token_secret: str = "entsoe-api-token"
    """Name of the secret holding the ENTSO-E security token."""
    price_request_max_age_minutes: int = Field(default=180, ge=1)
    """A price ingest request older than this is dropped (the scheduler asks again)."""

    api_url: str = "http://127.0.0.1:8080/api"
    """The operator API's URL: the audience its callers' Google ID tokens must carry (gcp
    backend; the function's gen2 URL in the cloud)."""
    api_extra_audiences: list[str] = Field(default_factory=list)
    """Audiences accepted besides ``api_url``, e.g. ``["32555940559.apps.googleusercontent.com"]``
    (the audience of ``gcloud auth print-identity-token`` for a person's account, which cannot ask
    for another; Cloud Run's invoker check accepts it too). The role map still decides who may do
    what; empty by default, so only tokens minted for this API are accepted."""
    api_roles: dict[str, Literal["viewer", "operator", "admin"]] = Field(default_factory=dict)
    """Caller email -> role inside the operator API, e.g.
    ``HPSTEER_API_ROLES='{"alice@example.com": "admin"}'`` (emails compared case-insensitively);
    a verified caller whose email is not here is refused (403). ``viewer`` reads, ``operator``
    does everything but delete and bulk import, ``admin`` everything. Locally (backend local)
    every call is a fixed local admin."""

    firestore_emulator_host: str | None = Field(
        default=None, validation_alias=AliasChoices("FIRESTORE_EMULATOR_HOST")
    )
    pubsub_emulator_host: str | None = Field(
        default=None, validation_alias=AliasChoices("PUBSUB_EMULATOR_HOST")
    )
    tasks_emulator_host: str | None = None
    bigquery_emulator_host: str | None = None
    secret_manager_emulator_host: str | None = None

    @model_validator(mode="after")
    def _cloud_needs_a_project(self) -> Self:
        if self.backend == "gcp" and self.project == LOCAL_PROJECT and not self.uses_emulators:
            raise ValueError("HPSTEER_BACKEND=gcp needs HPSTEER_PROJECT set to a real project id")
        return self

    @property
    def uses_emulators(self) -> bool:
        return any(
            (
                self.firestore_emulator_host,
                self.pubsub_emulator_host,
                self.tasks_emulator_host,
                self.bigquery_emulator_host,
                self.secret_manager_emulator_host,
            )
        )

    @property
    def effective_tasks_location(self) -> str:
        return self.tasks_location or self.region
