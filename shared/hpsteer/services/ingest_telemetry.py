"""Telemetry in: manufacturer webhooks onto ``device-telemetry``, then samples into state.

**The webhook** (:func:`serve_telemetry_webhook`, the HTTP function ``telemetry_webhook``):

1. Anything but ``POST`` is 405; a body over ``max_body_bytes`` is 413.
2. :class:`~hpsteer.services.webhooks.WebhookVerifier` checks the Standard Webhooks headers and
   signature over the raw body, then the timestamp: 401 for a missing or wrong signature, 400 for
   a malformed id or timestamp or one more than 5 minutes off. Nothing is parsed before this.
3. The body is parsed (400 naming the field at fault): one sample object, or a JSON array of
   them (at most ``max_samples``), each in this generic shape (:class:`WebhookSample`; unknown
   fields are refused)::

       {"manufacturer": "nibe_myuplink",            # required: the adapter's name
        "device_id": "home-17",                     # required: hpsteer's device id
        "observed_at": "2025-02-24T05:37:00Z",      # required, with an offset or Z
        "sample_id": "evt-93411",                   # optional; default: device_id@observed_at
        "indoor_temp_c": 21.4, "outdoor_temp_c": -3.0, "supply_temp_c": 35.5,
        "dhw_temp_c": 48.0, "power_kw": 1.2, "observed_mode": "min",
        "setpoint_offset_k": -2.0, "room_setpoint_c": 21.0,
        "online": true, "changed_by_user": false}   # all optional (null: not reported)

   A sample observed more than ``max_clock_skew`` in the future is refused (400): it would
   outrank every real sample until then.
4. The id is claimed (the replay record). A replay of a processed webhook is answered **200**
   ``duplicate`` with nothing published: Standard Webhooks senders keep the id across retries
   and retry every non-2xx for days, so a sender whose 202 was lost must hear success, or it
   would retry and finally disable the endpoint; a replay by anyone else gains nothing, since
   nothing is done again. (409 would tell that sender to retry.) A claimed but unfinished id
   (an earlier attempt failed before publishing everything) is handled again: publishing is
   idempotent downstream, keyed by ``sample_id``.
5. Each sample is published on ``device-telemetry`` (attribute ``device_id``, and the request's
   ``traceparent`` when well-formed), the id is marked processed, and the answer is **202**.
   A store, bus or secrets outage is 503 with ``Retry-After``; no usable secret is 500 (fail
   closed, logged CRITICAL).

**The Pub/Sub handler** (:func:`handle_telemetry_message`, function ``ingest_telemetry``):
parses the :class:`~hpsteer.domain.telemetry.TelemetrySample`, refuses one observed more than
``max_clock_skew`` in the future (:func:`refuse_future`), then

- stores it (:func:`store_sample`): in a transaction, replaces ``devices/{id}.last_telemetry``
  (:func:`last_telemetry_document`: ``observed_at`` as a timestamp, the measured fields,
  ``observed_mode``, ``online``, ``changed_by_user``, ``source``, ``sample_id``,
  ``manufacturer``, ``stored_at``) **only when the sample is strictly newer** than the stored
  ``observed_at`` (late and duplicated samples never move state backwards) **and worth
  storing** (:func:`~hpsteer.domain.telemetry.worth_storing`: something decisions are made by
  changed, the household's own setting shows, or the stored sample is older than the source's
  refresh bound; otherwise the write would only move the temperatures and the power a few
  minutes on). An unknown device is logged and acknowledged; a sample whose manufacturer is not
  the device's is refused (acknowledged, logged);
- appends **every** sample, late and kept-back ones included, to ``telemetry_history`` with
  insert id ``{device_id}/{sample_id}``, so a redelivery adds nothing.

Storing a sample (:func:`store_sample`, one definition for ingestion and reconciliation) also

- observes ``energy_consumption_kwh`` (label oem) when the sample advanced the state: the stored
  sample's ``power_kw`` times the time since it (gaps over ``ENERGY_MAX_GAP`` are not counted);
- asks for a re-plan (:class:`~hpsteer.domain.messages.ReplanRequest` on ``replan-requests``)
  when a newer sample's indoor temperature is off the current plan's prediction by more than
  ``replan_band_k`` (:func:`~hpsteer.domain.plan_track.drift_replan_due`: MPC's measured-state
  trigger). Such a sample is always stored, with ``drift_replan`` (the plan asked for) in the same
  write, so optimize re-plans from it and the same plan's drift asks once per cooldown.

**Polled samples** (reconciliation, :mod:`hpsteer.services.reconcile`) do not come through the
topic: :func:`sample_from_device_state` turns an adapter's
:class:`~hpsteer.adapters.protocol.DeviceState` into a sample (``source=poll``, ``sample_id``
``{device_id}@{observed_at}``, the same id a webhook sample without its own id gets, so one
observation reported both ways is one row). Reconciliation has just read the device document in
its page query, so it stores a polled sample itself: :func:`store_sample` with ``read`` (that
document's data and ``update_time``) judges it on that read and, when it is worth storing,
writes it with one update conditional on the document being unchanged since (no transaction,
no second read); a document written in between (a pushed sample, optimize, reconciliation's own
booking) falls back to the transaction, which judges the sample again on what is stored, so the
state still only moves forward. The page appends every polled sample to the history itself, in
one append (:func:`append_history`: the same rows and insert ids as ingestion's).

A polled sample published with the attribute ``record_only`` (:data:`RECORD_ONLY`) is only
appended to the history, without reading the device: reconciliation publishes its polled
samples so (:func:`publish_sample`) only when the page's append failed, and had already stored
(or judged not worth storing) each of them. Only polled samples are taken on that word; a
pushed sample is always checked against the device.

Log volume: a sample is logged at DEBUG (the history table has every one); what needs a person
(an unknown device, a refused sample) is logged at WARNING and above.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import Field, ValidationError

from hpsteer.adapters.protocol import DeviceState
from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.base import FrozenModel, UtcDatetime, describe_validation_error
from hpsteer.domain.devices import DEVICE_ID, SLUG
from hpsteer.domain.instants import format_instant, parse_instant
from hpsteer.domain.messages import ReplanRequest, Topic
from hpsteer.domain.plan_track import PlanDrift, drift_replan_due
from hpsteer.domain.telemetry import (
    TelemetrySample,
    TelemetrySource,
    refresh_bound,
    worth_storing,
)
from hpsteer.errors import (
    DocumentNotFound,
    InvalidInput,
    MalformedMessage,
    TransientError,
    UnknownDevice,
)
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.observability.logging import log_context
from hpsteer.observability.metrics import ENERGY_CONSUMPTION_KWH, metrics
from hpsteer.ports.analytics import Column, TableSchema
from hpsteer.ports.bus import MessageBus
from hpsteer.ports.store import DocumentStore, update_as_decided
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.paths import device_path
from hpsteer.services.replan_requests import publish_replan_request
from hpsteer.services.webhooks import (
    Claim,
    Keyring,
    NoUsableSecret,
    VerifiedWebhook,
    WebhookMalformed,
    WebhookOptions,
    WebhookRefused,
    WebhookVerifier,
)

__all__ = [
    "RECORD_ONLY",
    "TELEMETRY_HISTORY",
    "HttpAnswer",
    "TelemetryOptions",
    "WebhookReply",
    "WebhookSample",
    "append_history",
    "derive_sample_id",
    "handle_telemetry_message",
    "handle_telemetry_webhook",
    "history_insert_id",
    "history_row",
    "ingest_sample",
    "last_telemetry_document",
    "parse_webhook_body",
    "publish_sample",
    "refuse_future",
    "sample_from_device_state",
    "serve_telemetry_webhook",
    "state_update_needed",
    "store_sample",
    "telemetry_options",
    "webhook_options",
]

_log = logging.getLogger(__name__)

ENERGY_MAX_GAP = timedelta(minutes=90)
"""``energy_consumption_kwh`` integrates power between consecutive samples up to this gap."""
RECORD_ONLY = "record_only"
"""The attribute (value ``"true"``) of a polled sample whose publisher has already stored it or
found it not worth storing: appended to the history without reading the device (module
docstring)."""

TELEMETRY_HISTORY = TableSchema(
    name="telemetry_history",
    columns=(
        Column("device_id", "STRING", required=True),
        Column("sample_id", "STRING", required=True),
        Column("observed_at", "TIMESTAMP", required=True, description="when the device was seen"),
        Column("source", "STRING", required=True, description="webhook, poll or simulation"),
        Column("manufacturer", "STRING"),
        Column("indoor_temp_c", "FLOAT64"),
        Column("outdoor_temp_c", "FLOAT64"),
        Column("supply_temp_c", "FLOAT64"),
        Column("dhw_temp_c", "FLOAT64"),
        Column("power_kw", "FLOAT64"),
        Column("observed_mode", "STRING", description="min, mid or max"),
        Column("setpoint_offset_k", "FLOAT64"),
        Column("room_setpoint_c", "FLOAT64"),
        Column("online", "BOOL"),
        Column("changed_by_user", "BOOL"),
        Column("ingested_at", "TIMESTAMP", required=True, description="first ingestion"),
    ),
    partition_by="observed_at",
    cluster_by=("device_id",),
    description="Every telemetry sample ingested, late and out-of-order ones included.",
)

HttpAnswer = tuple[str, int, dict[str, str]]
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class TelemetryOptions:
    """How ingestion judges samples."""

    max_clock_skew: timedelta = timedelta(minutes=5)
    """A sample observed further in the future than this is refused."""
    reconcile_interval: timedelta = timedelta(minutes=10)
    """Reconciliation's interval: a pushed sample's refresh bound is a quarter of it."""
    replan_band_k: float = 0.5
    """A measured indoor temperature further than this off the plan asks for a re-plan."""
    drift_replan_cooldown: timedelta = timedelta(hours=1)
    """How long before the same plan's drift asks for a re-plan again."""


def webhook_options(settings: Settings) -> WebhookOptions:
    """The telemetry endpoint's options, from Settings' ``telemetry_webhook_*`` fields."""
    return WebhookOptions(
        secret_name=settings.telemetry_webhook_secret,
        previous_versions=settings.telemetry_webhook_previous_versions,
        tolerance=timedelta(seconds=settings.telemetry_webhook_tolerance_seconds),
    )


def telemetry_options(settings: Settings) -> TelemetryOptions:
    return TelemetryOptions(
        max_clock_skew=timedelta(seconds=settings.telemetry_max_clock_skew_seconds),
        reconcile_interval=timedelta(minutes=settings.reconcile_interval_minutes),
        replan_band_k=settings.replan_band_k,
        drift_replan_cooldown=timedelta(minutes=settings.drift_replan_cooldown_minutes),
    )


# -- samples ----------------------------------------------------------------------------------


def derive_sample_id(device_id: str, observed_at: datetime) -> str:
    """``home-17@2025-02-24T05:37:00Z``: one observation of one device, whoever reports it."""
    return f"{device_id}@{format_instant(observed_at)}"


def _sample(fields: Mapping[str, Any]) -> TelemetrySample:
    try:
        return TelemetrySample(**fields)
    except ValidationError as err:
        raise InvalidInput(f"telemetry sample: {describe_validation_error(err)}") from err


def sample_from_device_state(state: DeviceState, device_id: str | None = None) -> TelemetrySample:
    """A polled state as a sample (``device_id`` defaults to the state's device reference)."""
    device = device_id or state.device.device_id
    if not device:
        raise InvalidInput(f"a {state.device.manufacturer} state names no hpsteer device id")
    return _sample(
        {
            "sample_id": derive_sample_id(device, state.observed_at),
            "device_id": device,
            "observed_at": state.observed_at,
            "source": TelemetrySource.POLL,
            "manufacturer": state.device.manufacturer,
            "indoor_temp_c": state.indoor_temp_c,
            "outdoor_temp_c": state.outdoor_temp_c,
            "supply_temp_c": state.supply_temp_c,
            "dhw_temp_c": state.dhw_temp_c,
            "power_kw": state.power_kw,
            "observed_mode": state.mode,
            "setpoint_offset_k": state.setpoint_offset_k,
            "room_setpoint_c": state.room_setpoint_c,
            "online": state.online,
            "changed_by_user": state.changed_by_user,
        }
    )


def publish_sample(
    bus: MessageBus,
    sample: TelemetrySample,
    traceparent: str | None = None,
    *,
    record_only: bool = False,
) -> str:
    """Put ``sample`` on ``device-telemetry``; return the bus's message id. ``record_only``: a
    polled sample the caller has already stored or found not worth storing (:func:`store_sample`),
    to be appended to the history only."""
    attributes = {"device_id": sample.device_id}
    if traceparent and _TRACEPARENT.fullmatch(traceparent):
        attributes["traceparent"] = traceparent
    if record_only:
        if sample.source is not TelemetrySource.POLL:
            raise InvalidInput("only a polled sample can be published to be recorded only")
        attributes[RECORD_ONLY] = "true"
    return bus.publish(Topic.DEVICE_TELEMETRY, encode_json_message(sample), attributes=attributes)


class WebhookSample(FrozenModel):
    """One sample as a webhook sends it (the shape in the module docstring)."""

    schema_version: Literal[1] = 1
    manufacturer: str = Field(pattern=SLUG)
    device_id: str = Field(pattern=DEVICE_ID)
    observed_at: UtcDatetime
    sample_id: str | None = Field(default=None, min_length=1, max_length=200)
    indoor_temp_c: float | None = None
    outdoor_temp_c: float | None = None
    supply_temp_c: float | None = None
    dhw_temp_c: float | None = None
    power_kw: float | None = None
    observed_mode: Mode | None = None
    setpoint_offset_k: float | None = None
    room_setpoint_c: float | None = None
    online: bool | None = None
    changed_by_user: bool | None = None

    def to_sample(self) -> TelemetrySample:
        """The sample to publish; the value ranges are :class:`TelemetrySample`'s."""
        fields = self.model_dump(exclude={"schema_version"})
        fields["sample_id"] = self.sample_id or derive_sample_id(self.device_id, self.observed_at)
        return TelemetrySample.model_validate({**fields, "source": TelemetrySource.WEBHOOK})


def parse_webhook_body(
    body: bytes, *, now: datetime, max_samples: int, max_clock_skew: timedelta
) -> list[TelemetrySample]:
    """The samples of a verified body; :class:`WebhookMalformed` naming what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookMalformed("the body is not UTF-8 JSON") from None
    items: Sequence[object] = data if isinstance(data, list) else [data]
    if not items:
        raise WebhookMalformed("the body is an empty list: no sample")
    if len(items) > max_samples:
        raise WebhookMalformed(f"{len(items)} samples in one webhook, at most {max_samples}")
    samples = []
    for index, item in enumerate(items):
        where = f"sample [{index}]" if isinstance(data, list) else "sample"
        try:
            sample = WebhookSample.model_validate(item).to_sample()
        except ValidationError as err:
            raise WebhookMalformed(f"{where}: {describe_validation_error(err)}") from None
        if sample.observed_at > now + max_clock_skew:
            raise WebhookMalformed(f"{where}: observed_at is in the future")
        samples.append(sample)
    return samples


# -- the webhook ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookReply:
    status: int
    body: Mapping[str, object]
    headers: Mapping[str, str] = field(default_factory=dict)

    def as_http(self) -> HttpAnswer:
        headers = {"Content-Type": "application/json", **self.headers}
        return json.dumps(self.body), self.status, headers


def _verifier(deps: Dependencies, options: WebhookOptions) -> WebhookVerifier:
    secrets, store, clock = deps.secrets, deps.store, deps.clock  # built outside singleton()
    return deps.singleton(
        f"webhook-verifier:{options}",
        lambda: WebhookVerifier(Keyring(secrets, clock, options), store, clock, options),
    )


def _accept(
    webhook: VerifiedWebhook,
    deps: Dependencies,
    verifier: WebhookVerifier,
    samples: Sequence[TelemetrySample],
    traceparent: str | None,
) -> WebhookReply:
    claim = verifier.claim(webhook)
    if claim is Claim.PROCESSED:
        _log.info("webhook %s was processed already: replay ignored", webhook.webhook_id)
        return WebhookReply(200, {"outcome": "duplicate"})
    if claim is Claim.UNFINISHED:
        _log.warning("webhook %s was received before but not processed: again", webhook.webhook_id)
    for sample in samples:
        publish_sample(deps.bus, sample, traceparent)
    verifier.mark_processed(webhook, samples=len(samples))
    _log.info(
        "webhook %s: %d samples published",
        webhook.webhook_id,
        len(samples),
        extra={"secret_version": webhook.secret_version},
    )
    return WebhookReply(202, {"outcome": "accepted", "samples": len(samples)})


def handle_telemetry_webhook(
    headers: Mapping[str, str],
    body: bytes,
    deps: Dependencies,
    options: WebhookOptions | None = None,
) -> WebhookReply:
    """Verify, parse, claim, publish (see the module docstring); never raises for bad input."""
    options = options or webhook_options(deps.settings)
    if len(body) > options.max_body_bytes:
        return WebhookReply(413, {"error": f"body over {options.max_body_bytes} bytes"})
    try:
        verifier = _verifier(deps, options)
        webhook = verifier.verify(headers, body)
        with log_context(webhook_id=webhook.webhook_id):
            samples = parse_webhook_body(
                webhook.body,
                now=deps.clock.now(),
                max_samples=options.max_samples,
                max_clock_skew=telemetry_options(deps.settings).max_clock_skew,
            )
            traceparent = {k.lower(): v for k, v in headers.items()}.get("traceparent")
            return _accept(webhook, deps, verifier, samples, traceparent)
    except WebhookRefused as err:
        _log.warning("refused a telemetry webhook (%d): %s", err.status, err)
        return WebhookReply(err.status, {"error": str(err)})
    except NoUsableSecret as err:
        _log.critical("cannot verify telemetry webhooks: %s", err)
        return WebhookReply(500, {"error": "the endpoint has no usable secret"})
    except TransientError as err:
        _log.error("telemetry webhook not handled, the sender will retry: %s", err)
        return WebhookReply(503, {"error": type(err).__name__}, {"Retry-After": "30"})


class _Headers(Protocol):
    def items(self) -> Iterable[tuple[str, str]]: ...


class WebhookRequest(Protocol):
    """The part of a Flask request the webhook reads."""

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> _Headers: ...

    def get_data(self) -> bytes: ...


def serve_telemetry_webhook(request: WebhookRequest, deps: Dependencies) -> HttpAnswer:
    """The HTTP function's whole work: POST only, then :func:`handle_telemetry_webhook`."""
    if request.method != "POST":
        return WebhookReply(405, {"error": "POST only"}, {"Allow": "POST"}).as_http()
    headers = dict(request.headers.items())
    return handle_telemetry_webhook(headers, request.get_data(), deps).as_http()


# -- ingestion --------------------------------------------------------------------------------


def last_telemetry_document(sample: TelemetrySample, stored_at: datetime) -> dict[str, Any]:
    """``devices/{id}.last_telemetry``: what plan_inputs and reconciliation read."""
    return {
        "sample_id": sample.sample_id,
        "source": sample.source.value,
        "manufacturer": sample.manufacturer,
        "observed_at": sample.observed_at,
        "indoor_temp_c": sample.indoor_temp_c,
        "outdoor_temp_c": sample.outdoor_temp_c,
        "supply_temp_c": sample.supply_temp_c,
        "dhw_temp_c": sample.dhw_temp_c,
        "power_kw": sample.power_kw,
        "observed_mode": None if sample.observed_mode is None else sample.observed_mode.value,
        "setpoint_offset_k": sample.setpoint_offset_k,
        "room_setpoint_c": sample.room_setpoint_c,
        "online": sample.online,
        "changed_by_user": sample.changed_by_user,
        "stored_at": stored_at,
    }


def _stored_observed_at(device: Mapping[str, Any]) -> datetime | None:
    stored = device.get("last_telemetry")
    value = stored.get("observed_at") if isinstance(stored, Mapping) else None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_instant(value, field="last_telemetry.observed_at")
        except InvalidInput:
            return None
    return None


def _drift(
    sample: TelemetrySample, device: Mapping[str, Any], options: TelemetryOptions
) -> PlanDrift | None:
    return drift_replan_due(
        device,
        sample.indoor_temp_c,
        sample.observed_at,
        band_k=options.replan_band_k,
        cooldown=options.drift_replan_cooldown,
    )


def state_update_needed(
    sample: TelemetrySample, device: Mapping[str, Any], options: TelemetryOptions
) -> bool:
    """Whether ``sample`` must replace the stored telemetry of ``device`` (a device document):
    it is strictly newer and worth storing (:func:`~hpsteer.domain.telemetry.worth_storing`), or
    it shows the home off its plan (:func:`~hpsteer.domain.plan_track.drift_replan_due`: the
    re-plan starts from this measurement, so it must be stored)."""
    stored_at = _stored_observed_at(device)
    if stored_at is not None and sample.observed_at <= stored_at:
        return False
    stored = device.get("last_telemetry")
    bound = refresh_bound(sample.source, options.reconcile_interval)
    if worth_storing(sample, stored if isinstance(stored, Mapping) else None, stored_at, bound):
        return True
    return _drift(sample, device, options) is not None


@dataclass(frozen=True, slots=True)
class _Advance:
    """What storing a sample writes on its device, and what follows the write."""

    changes: dict[str, Any]
    energy: tuple[float, str] | None
    """kWh since the stored sample, and the device's manufacturer (the metric's label)."""
    drift: PlanDrift | None
    """The drift off the current plan to ask a re-plan for (marked in ``changes``)."""


def _advance(
    sample: TelemetrySample, device: Mapping[str, Any], now: datetime, options: TelemetryOptions
) -> _Advance | None:
    """What storing ``sample`` on ``device`` (its document's data) writes; ``None`` when it is
    not stored (:func:`state_update_needed`). :class:`InvalidInput` for a sample from another
    manufacturer than the device's."""
    owner = device.get("manufacturer")
    if sample.manufacturer and isinstance(owner, str) and owner != sample.manufacturer:
        raise InvalidInput(
            f"device {sample.device_id} is a {owner} device; "
            f"a sample from {sample.manufacturer} was refused"
        )
    if not state_update_needed(sample, device, options):
        return None
    kwh = _energy_since(device.get("last_telemetry"), sample.observed_at)
    changes: dict[str, Any] = {"last_telemetry": last_telemetry_document(sample, now)}
    drift = _drift(sample, device, options)
    if drift is not None:
        changes["drift_replan"] = drift.to_document()
    energy = (kwh, owner) if kwh is not None and isinstance(owner, str) else None
    return _Advance(changes, energy, drift)


def _advance_state(
    store: DocumentStore,
    sample: TelemetrySample,
    now: datetime,
    options: TelemetryOptions,
    read: tuple[Mapping[str, Any], datetime] | None = None,
) -> _Advance | None:
    """Store ``sample`` as the device's last telemetry if it is newer and worth storing; what
    was written (``None``: nothing). In a transaction; or, for a caller that has just read the
    device (``read``: its data and ``update_time``), judged on that read and written by one
    update on the condition that the document is still as read, the transaction only if it was
    written since (:func:`~hpsteer.ports.store.update_as_decided`)."""

    def decide(device: Mapping[str, Any]) -> tuple[dict[str, Any], _Advance] | None:
        advanced = _advance(sample, device, now, options)
        return None if advanced is None else (advanced.changes, advanced)

    try:
        return update_as_decided(store, device_path(sample.device_id), decide, read=read)
    except DocumentNotFound as err:
        raise UnknownDevice(f"no device {sample.device_id}") from err


def refuse_future(sample: TelemetrySample, now: datetime, options: TelemetryOptions) -> None:
    """:class:`InvalidInput` for a sample observed more than ``max_clock_skew`` after ``now``:
    it would outrank every real sample until then."""
    if sample.observed_at > now + options.max_clock_skew:
        raise InvalidInput(
            f"sample {sample.sample_id} is observed at {format_instant(sample.observed_at)}, "
            f"in the future (now {format_instant(now)})"
        )


def store_sample(
    deps: Dependencies,
    sample: TelemetrySample,
    options: TelemetryOptions,
    *,
    read: tuple[Mapping[str, Any], datetime] | None = None,
    now: datetime | None = None,
) -> bool:
    """Store ``sample`` as its device's ``last_telemetry`` if it is strictly newer and worth
    storing (:func:`state_update_needed`), with ``drift_replan`` when it shows the home off its
    plan; whether it was. What storing a sample means, for ingestion and reconciliation alike:
    then the ``energy_consumption_kwh`` observation, and the re-plan asked for a drift. Not the
    history: the caller appends the sample (:func:`append_history`).

    ``read``: the device document's data and ``update_time`` as the caller has just read it
    (reconciliation's page query): judged on it and written by one conditional update (no
    transaction, no read), or, should the document have been written since, by the transaction
    that judges it again on what is stored. Without it, the transaction (one read, one write).

    Raises :class:`InvalidInput` for a sample from the future (:func:`refuse_future`) or from
    another manufacturer than the device's, :class:`UnknownDevice` (nothing written), and the
    store's and the bus's transient errors.
    """
    now = now or deps.clock.now()
    refuse_future(sample, now, options)
    advanced = _advance_state(deps.store, sample, now, options, read)
    if advanced is None:
        return False
    if advanced.energy is not None:
        kwh, oem = advanced.energy
        metrics.observe(ENERGY_CONSUMPTION_KWH, kwh, oem=oem)
    if advanced.drift is not None:
        _ask_replan(deps, sample.device_id, advanced.drift, now)
    return True


def _ask_replan(deps: Dependencies, device_id: str, drift: PlanDrift, now: datetime) -> None:
    """The home left its plan: a re-plan from the measurement just stored. Published after the
    write that marks it; should the publish fail, the next sample off the plan asks again once
    the cooldown has passed (:mod:`hpsteer.domain.plan_track`)."""
    request = ReplanRequest(device_id=device_id, reason=drift.reason()[:300], requested_at=now)
    publish_replan_request(deps.bus, request)
    _log.info("device %s left its plan: re-plan asked (%s)", device_id, drift.reason())


def _energy_since(stored: Any, observed_at: datetime) -> float | None:
    """kWh from the stored sample to one observed at ``observed_at``, at the stored sample's
    power (None without a power figure, or across a gap over :data:`ENERGY_MAX_GAP`)."""
    if not isinstance(stored, Mapping):
        return None
    power, since = stored.get("power_kw"), stored.get("observed_at")
    if not isinstance(power, int | float) or not isinstance(since, datetime):
        return None
    gap = observed_at - since
    if gap > ENERGY_MAX_GAP:
        return None
    return float(power) * gap.total_seconds() / 3600.0


def history_row(sample: TelemetrySample, ingested_at: datetime) -> dict[str, Any]:
    """``sample``'s row in ``telemetry_history``."""
    row = last_telemetry_document(sample, ingested_at)
    del row["stored_at"]
    return {"device_id": sample.device_id, **row, "ingested_at": ingested_at}


def history_insert_id(sample: TelemetrySample) -> str:
    """``{device_id}/{sample_id}``: one observation is one row, whoever appends it."""
    return f"{sample.device_id}/{sample.sample_id}"


def append_history(
    deps: Dependencies, samples: Sequence[TelemetrySample], ingested_at: datetime
) -> None:
    """Append ``samples`` to ``telemetry_history`` in one append (:func:`history_row`, insert
    ids :func:`history_insert_id`), the table ensured once per instance. What ingestion does
    with every sample, and reconciliation with every poll of a page."""
    if not samples:
        return
    analytics = deps.analytics
    deps.singleton(
        f"table:{TELEMETRY_HISTORY.name}", lambda: analytics.ensure_table(TELEMETRY_HISTORY)
    )
    analytics.append(
        TELEMETRY_HISTORY.name,
        [history_row(sample, ingested_at) for sample in samples],
        [history_insert_id(sample) for sample in samples],
    )


def ingest_sample(
    sample: TelemetrySample,
    deps: Dependencies,
    options: TelemetryOptions | None = None,
    *,
    record_only: bool = False,
) -> bool:
    """Advance the device's state if ``sample`` is newer and worth storing (:func:`store_sample`),
    and record it; True if it advanced. ``record_only`` (a polled sample its publisher has
    already stored or found not worth storing): record it without reading the device.

    Raises :class:`UnknownDevice` (nothing written) and :class:`InvalidInput` for a sample from
    the future or from another manufacturer than the device's.
    """
    options = options or telemetry_options(deps.settings)
    now = deps.clock.now()
    refuse_future(sample, now, options)
    if record_only and sample.source is not TelemetrySource.POLL:
        raise InvalidInput(f"sample {sample.sample_id} is not polled: it is not recorded only")
    advanced = False
    if not record_only:
        advanced = store_sample(deps, sample, options, now=now)
    append_history(deps, [sample], now)
    return advanced


def handle_telemetry_message(message: PubSubMessage, deps: Dependencies) -> None:
    """The ``device-telemetry`` handler: decode the sample and ingest it."""
    sample = TelemetrySample.parse_json(message.data)
    named = message.attributes.get("device_id")
    if named is not None and named != sample.device_id:
        raise MalformedMessage(f"attribute device_id {named!r} is not the sample's device")
    record_only = message.attributes.get(RECORD_ONLY) == "true"
    if record_only and sample.source is not TelemetrySource.POLL:
        raise MalformedMessage(f"a {sample.source.value} sample cannot be recorded only")
    with log_context(device_id=sample.device_id, sample_id=sample.sample_id):
        try:
            advanced = ingest_sample(sample, deps, record_only=record_only)
        except UnknownDevice:
            _log.warning(
                "telemetry for unknown device %s acknowledged and dropped", sample.device_id
            )
            return
        _log.debug(
            "telemetry sample %s %s",
            sample.sample_id,
            "moved the device's state" if advanced else "recorded only",
        )
