"""What the cloud would bill per device and month, from what the code does in a simulated week.

Goal (issue 10): at most $0.01 per device-month for a 100,000-device fleet, at 10-minute
reconciliation and about 10 commands a day, at Google's list prices (europe-west1, Tier 1).

**Method.** ``python -m benchmarks.cloud_cost --json`` runs the real local simulation
(:mod:`hpsteer.runtime.simulation`: SE3 from 2023-01-09, ``realistic`` faults, the Cloud
Function entry points themselves) with a counting wrapper around every port the cloud bills:

- the document store (:class:`benchmarks.dispatch.PhasedCountingStore`): reads (a query one per
  document it returns, at least one; a transaction's reads in every attempt), writes and deletes
  (a transaction's once), and at the end the stored size of every document written, by
  Firestore's storage-size rules (document name + fields + 32 bytes) plus an estimate of its
  automatic single-field index entries (two per field, one per array element; none for a field,
  or a map's subfields, that ``terraform/firestore.tf`` exempts from indexing with an empty
  ``index_config``, read when the benchmark runs: :func:`firestore_index_exemptions`);
- the bus: each publish and each delivery (every handler call, duplicates and retries
  included), at Pub/Sub's billable size (data + attributes + 20 bytes of timestamp + the
  message id, at least 1,000 bytes per request: the code publishes one message per request);
- Cloud Tasks: every ``create_task`` and ``delete_task`` call and every delivery attempt;
- analytics: rows and their BigQuery size (streaming inserts bill at least 1 KB a row; storage
  is what a device adds in a month, billed for that month);
- secrets: the few the project holds (no secret per household: each household's refresh token
  is sealed in its Firestore credentials document, whose reads and writes the counting store
  counts with the rest, :mod:`hpsteer.adapters.credentials`). Versions: those active in the
  run's secret store at the end (each manufacturer's app client id and secret, the data key)
  plus the two service secrets the simulation does not use, counted once for the project.
  Accesses: a secret read for the first time (a name and version this instance had not read) is
  what every function instance reads once at start (the data key, the app credentials), priced
  per **instance start**, of which there are assumed to be, per month, the ``max_instances``
  (``terraform/functions.tf``) of every function serving a credential-reading entry point (once
  per function, however many of them it serves) restarted every :data:`INSTANCE_LIFETIME_S` (15
  minutes, Cloud Run's idle shutdown: pessimistic for a busy fleet); a secret read again is
  counted per device (none is, as the code stands);
- function invocations per entry point, with the wall time spent in the handler minus the time
  spent inside the simulated manufacturers (their cloud's work, not ours);
- log lines the handlers write at INFO and above, with the functions' own logging setup
  (:func:`~hpsteer.observability.logging.configure_logging`), as ``JsonFormatter`` writes them.
  Cloud Logging bills the bytes streamed into log buckets ("a one-time charge for streaming logs
  into log bucket storage", https://cloud.google.com/stackdriver/pricing; the Log Router is
  free), so the metric records, which ``terraform/monitoring.tf`` excludes from the ``_Default``
  bucket (the log-based metrics count them all the same), are counted apart
  (``metric_record_bytes``) and not billed;
- trace spans (all recorded; billed at the production sample rate 0.1, errors always kept).

Only what happens during the simulated days counts: the fleet's registration before, the
settling after and the simulation's own observation reads are left out. Per device-day figures
are ``count / (homes x days)``, times 30.44 days a month. What ``ingest_prices`` and
``ingest_weather`` do (one area's prices and weather) and what Cloud Scheduler publishes does
not grow with the fleet: it is counted once for the project. Free tiers are applied once per
project (or billing account) and month, to the fleet's total, never per device.

**Functions** (Cloud Run functions, gen2: billed as Cloud Run, request-based: "instances are only
charged when they process requests, when they start, and when they shut down",
https://cloud.google.com/run/docs/configuring/billing-settings; the time an instance processes at
least one request is billed once however many requests it serves then; rounded up to 100 ms). Each
entry point runs on the Cloud Function that serves it: its own, or, for one that is a route of
another function (verification, the dispatch function's ``/verify``: :data:`SERVED_BY`), that
function's; sized as ``terraform/functions.tf`` sizes that function (memory, cpu, concurrency,
max_instances; read when the benchmark runs, :func:`function_resources`). A request's duration is
its handler CPU time / the vCPUs (a fractional vCPU stretches the same work) + the assumed round
trips of its remote calls (:data:`LATENCY_S`: the local backends answer in microseconds) on its
critical path (:class:`Meter`): the waits of the thread serving it, store operations included, plus
the longest of the lanes that worked for it at the same time: each other thread (a pool's workers:
optimize_shard solves on one), and the devices of a reconcile page and of an optimize shard and the
due plan releases a command sweep settles, which the simulation handles one after another (the local
runtime's ``reconcile_workers``, ``optimize_io_workers`` and ``sweep_workers`` are 1, so its seeded
faults and the order of its writes stay reproducible) while production runs them on that many
threads (terraform's ``HPSTEER_RECONCILE_WORKERS``, ``HPSTEER_OPTIMIZE_IO_WORKERS`` and
``HPSTEER_SWEEP_WORKERS``, else the settings' defaults; :func:`reconcile_workers`,
:func:`optimize_io_workers`, :func:`sweep_workers`): each unit (for optimize, a device's preparing,
and then its completing) goes to the lane free first, as a pool hands out its queue. The requests
an instance really serves at once (:func:`effective_concurrency`) follow from the fleet's load
(:func:`fleet_in_flight`: a device event's rate times its duration; every page of a reconcile run,
every shard of an optimize run, at once) and Cloud Run's autoscaler, which keeps each instance at
60 % of its maximum concurrency (https://cloud.google.com/run/docs/about-instance-autoscaling) up
to ``max_instances``. Billed instance time = the requests' durations / that concurrency, never less
than their CPU time on the instance's vCPUs, + 50 ms of rounding per request / that concurrency;
vCPU-seconds and GiB-seconds are that time times the entry point's vCPUs and memory. Entry points
one function serves share its instances: their requests in flight are added up, the function's
concurrency follows from that sum, and each of them is billed at it (:func:`entry_loads`;
``details.functions.<folder>.resources`` shows each entry point's own in-flight, its function's and
the shared concurrency). (An earlier model divided the waits by terraform's maximum concurrency
whatever the load: too low where the load cannot fill an instance's slots, as for dispatch and
ingest_telemetry.) Requests per device: a task delivery or telemetry message per device event; one
reconcile page per 200 devices and one optimize shard per 100 per run, scaled to the fleet; fan-out
and sweep triggers once per project.

**By code path** (``by_code_path`` in the JSON, ``--by-caller`` prints it): every document
operation by entry point, code path (the innermost frame of hpsteer's own code above the store:
``services.reconcile:reconcile_page``, ``adapters.budget:acquire_all``) and collection
(``devices/{id}``); every log line by entry point and source (logger and message template, or
the metric a metric record counts); the assumed remote waits by entry point and kind (every
call's) and on the requests' critical paths (what is billed); the messages published by entry
point and topic; each priced per device-month at the list price.

**Limits.** Wall time on this machine is a proxy for CPU time on Cloud Run's vCPUs; the
latencies are assumptions, not measurements. What runs once per page or shard (the next page's
message, its log line) is counted per simulated device, so with fewer homes than a page it is
overstated (an upper bound); the reconcile page's run record (:data:`PER_PAGE_DOCUMENTS`) is
counted per page of the fleet. Cloud Run's own request logs, Eventarc, egress to the manufacturers,
Cloud Monitoring, Artifact Registry and the BigQuery queries of reports are not counted.
Firestore's europe-west1 row was not in the stored pricing pages (marked unconfirmed).
The default run has 100 homes (each its own account, plan and command stream, all three
manufacturers): 700 device-days in about 5 to 9 minutes on this machine. That is one optimize
shard (100) and half a reconcile page (200): a page's or a shard's own work is spread over as
many devices as a full shard gives it, and over half as many as a full page, hence the upper
bound above, now within a factor of two for reconcile. Likewise a reconcile page's workers share
fewer devices than a full page gives them (100 devices on 16 lanes: 6 or 7 polls on the longest
lane, where a page of 200 spreads 12.5 per lane and 16 pages share an instance either way).
Fewer homes overstate more: 20 homes (``--homes 20``, about 1.5 minutes, for trying a change)
came to $0.0107 where 100 came to $0.0103 on the same code (commit 041378a): the next page's
message and run record, the shard's history query, past weather digest and analytics inserts,
and the sweep's query, each spread over 20 devices instead of 100. One thing runs the
other way: a shard's analytics inserts, made on their own threads at its end, after its devices,
are counted as one more lane beside the devices' (up to one insert's 50 ms a shard missed).

``what_if_usd_per_device_month`` recomputes the total with no remote latency, with every remote
call's wait billed one after another (no concurrency inside a request: the rule before the
critical path), with every
request of a credential-reading entry point a cold start (each reads the data key and the app
credentials: what caching them per instance saves).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import math
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from types import FrameType
from typing import Any

from benchmarks.dispatch import PhasedCountingStore, Tally
from hpsteer.domain.market import PriceArea

DAYS_PER_MONTH = 30.44
FLEET_DEVICES = 100_000
GOAL_USD = 0.01
READ_ON = "2026-11-28"
READ_HOW = f"as stored by the search tool, read {READ_ON}"
GIB = float(2**30)
TIB = float(2**40)
PUBSUB_MIN_BYTES = 1000
PUBSUB_TIMESTAMP_BYTES = 20
PUBSUB_MESSAGE_ID_BYTES = 16
"""Pub/Sub message ids are 16-17 digit numbers (the local bus counts from 1)."""
BIGQUERY_MIN_ROW_BYTES = 1024
TRACE_SAMPLE_RATE = 0.1
ROUNDING_S = 0.05
"""Expected rounding per request when billed time is rounded up to 100 ms."""
SCHEDULER_JOBS = 4
"""Reconciliation, the command sweep, weather and prices (one area): the simulation's jobs."""
INSTANCE_LIFETIME_S = 900.0
"""Assumed life of a function instance: Cloud Run shuts an idle one down after about 15 minutes;
a busy fleet's instances live longer, so this overstates the starts (and their secret reads)."""
CREDENTIAL_ENTRY_POINTS = ("dispatch", "verify", "reconcile")
"""The entry points that call the manufacturers: each instance of the functions serving them
(:data:`SERVED_BY`) reads the data key and the app credentials once."""
SERVED_BY: dict[str, str] = {"verify": "dispatch"}
"""Entry points (as the benchmark names them) that have no Cloud Function of their own in
``terraform/functions.tf``, mapped to the function whose route serves them: verification is
the dispatch function's ``/verify`` route (``functions/dispatch/main.py``). Every other entry
point is served by the function of its own name. ``tests/unit/test_cloud_cost.py`` holds this
map to terraform and to the entry points the dispatch function's code declares."""


def serving_function(entry: str) -> str:
    """The terraform function (its key in the ``functions`` map) that serves ``entry``."""
    return SERVED_BY.get(entry, entry)


SERVICE_SECRET_VERSIONS = 2
"""The ENTSO-E token and the webhook secret (terraform/secrets.tf), one version each: active in
the project though the simulation does not read them."""


# -- prices -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Price:
    """A list price per unit and the free units a project (or billing account) gets a month."""

    service: str
    what: str
    unit: str
    usd_per_unit: float
    free_units_per_month: float
    source: str
    confirmed: bool = True
    note: str = ""


_FIRESTORE = "https://cloud.google.com/firestore/pricing"
_RUN = "https://cloud.google.com/run/pricing"
_OBSERVABILITY = "https://cloud.google.com/stackdriver/pricing"
_FIRESTORE_UNCONFIRMED = (
    "europe-west1 row not in the stored pages: the regional (us-central1 / us-west1) prices, "
    "assumed; the stored pages confirm the free quota (per day: 50,000 reads, 20,000 writes, "
    "20,000 deletes; 1 GiB stored)"
)

PRICES: dict[str, Price] = {
    "firestore_reads": Price(
        "Firestore",
        "document reads",
        "read",
        0.03 / 100_000,
        50_000 * DAYS_PER_MONTH,
        _FIRESTORE,
        False,
        _FIRESTORE_UNCONFIRMED,
    ),
    "firestore_writes": Price(
        "Firestore",
        "document writes",
        "write",
        0.09 / 100_000,
        20_000 * DAYS_PER_MONTH,
        _FIRESTORE,
        False,
        _FIRESTORE_UNCONFIRMED,
    ),
    "firestore_deletes": Price(
        "Firestore",
        "document deletes",
        "delete",
        0.01 / 100_000,
        20_000 * DAYS_PER_MONTH,
        _FIRESTORE,
        False,
        _FIRESTORE_UNCONFIRMED,
    ),
    "firestore_storage": Price(
        "Firestore",
        "stored data incl. index entries",
        "GiB-month",
        0.18,
        1.0,
        _FIRESTORE,
        False,
        "regional price assumed (the multi-region rows show $0.18)",
    ),
    "pubsub_throughput": Price(
        "Pub/Sub",
        "publish + delivery throughput (1,000 bytes min per request)",
        "TiB",
        40.0,
        10 * GIB / TIB,
        "https://cloud.google.com/pubsub/pricing",
    ),
    "tasks_operations": Price(
        "Cloud Tasks",
        "API calls and push delivery attempts",
        "operation",
        0.40 / 1_000_000,
        1_000_000,
        "https://cloud.google.com/tasks/pricing",
    ),
    "functions_requests": Price(
        "Cloud Run functions",
        "requests",
        "request",
        0.40 / 1_000_000,
        2_000_000,
        _RUN,
        note="Tier 1, request-based billing; free tier per billing account",
    ),
    "functions_vcpu": Price(
        "Cloud Run functions",
        "vCPU time (rounded up to 100 ms per request)",
        "vCPU-second",
        0.000024,
        180_000,
        _RUN,
    ),
    "functions_memory": Price(
        "Cloud Run functions",
        "memory time",
        "GiB-second",
        0.0000025,
        360_000,
        _RUN,
    ),
    "bigquery_streaming": Price(
        "BigQuery",
        "streaming inserts (insert_rows_json; 1 KB min per row)",
        "GiB",
        0.01 / 200 * 1024,
        0.0,
        "https://cloud.google.com/bigquery/pricing",
        note="$0.01 per 200 MB, EU multi-region",
    ),
    "bigquery_storage": Price(
        "BigQuery",
        "active logical storage of a month's rows",
        "GiB-month",
        0.02,
        10.0,
        "https://cloud.google.com/bigquery/pricing",
    ),
    "secret_access": Price(
        "Secret Manager",
        "access operations",
        "access",
        0.03 / 10_000,
        10_000,
        "https://cloud.google.com/secret-manager/pricing",
    ),
    "secret_versions": Price(
        "Secret Manager",
        "active secret versions (automatic replication: one location)",
        "version-month",
        0.06,
        6,
        "https://cloud.google.com/secret-manager/pricing",
    ),
    "logging": Price(
        "Cloud Logging",
        "log storage (ingestion) of the handlers' lines; metric records excluded",
        "GiB",
        0.50,
        50.0,
        _OBSERVABILITY,
        note=(
            "first 50 GiB per project and month; a one-time charge for streaming logs into log "
            "bucket storage, so the metric records terraform/monitoring.tf excludes from the "
            "_Default bucket (counted by the log-based metrics all the same) are not billed"
        ),
    ),
    "trace": Price(
        "Cloud Trace",
        "spans ingested (sample rate 0.1, errors kept)",
        "span",
        0.20 / 1_000_000,
        2_500_000,
        _OBSERVABILITY,
    ),
    "scheduler": Price(
        "Cloud Scheduler",
        "jobs",
        "job-month",
        0.10,
        3,
        "https://cloud.google.com/scheduler/pricing",
        note="3 free jobs per billing account",
    ),
}


# -- the pure arithmetic ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """Units of one price a month: per device (grows with the fleet) and for the project."""

    key: str
    per_device_month: float
    project_month: float = 0.0


@dataclass(frozen=True, slots=True)
class Item:
    service: str
    what: str
    unit: str
    quantity_per_device_month: float
    unit_price_usd: float
    usd_per_device_month: float
    fleet_units_per_month: float
    free_units_per_month: float

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "what": self.what,
            "unit": self.unit,
            "quantity_per_device_month": _round(self.quantity_per_device_month),
            "unit_price_usd": self.unit_price_usd,
            "usd_per_device_month": _round(self.usd_per_device_month),
            "fleet_units_per_month": _round(self.fleet_units_per_month),
            "free_units_per_month": self.free_units_per_month,
        }


def fleet_units(usage: Usage, fleet: int) -> float:
    """The project's units a month: every device's plus the project's own."""
    return usage.per_device_month * fleet + usage.project_month


def itemise(usages: Sequence[Usage], prices: Mapping[str, Price], fleet: int) -> list[Item]:
    """One item per usage: the fleet's units beyond the free tier (applied once, to the
    project's total) at the unit price, shared by the fleet's devices."""
    if fleet < 1:
        raise ValueError("a fleet has at least one device")
    items = []
    for usage in usages:
        price = prices[usage.key]
        units = fleet_units(usage, fleet)
        billable = max(0.0, units - price.free_units_per_month)
        items.append(
            Item(
                price.service,
                price.what,
                price.unit,
                units / fleet,
                price.usd_per_unit,
                billable * price.usd_per_unit / fleet,
                units,
                price.free_units_per_month,
            )
        )
    return items


def total_usd(items: Sequence[Item]) -> float:
    return sum(item.usd_per_device_month for item in items)


def firestore_string_bytes(text: str) -> int:
    return len(text.encode()) + 1


def firestore_name_bytes(path: str) -> int:
    """A document name: each collection and document id as a string, plus 16 bytes."""
    return sum(firestore_string_bytes(part) for part in path.split("/")) + 16


def firestore_value_bytes(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, str):
        return firestore_string_bytes(value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, list):
        return sum(firestore_value_bytes(v) for v in value)
    if isinstance(value, Mapping):
        return sum(firestore_string_bytes(k) + firestore_value_bytes(v) for k, v in value.items())
    raise TypeError(f"not a Firestore value: {type(value).__name__}")


def firestore_document_bytes(path: str, data: Mapping[str, Any]) -> int:
    """Firestore's storage size of a document: name + fields + 32 bytes."""
    return firestore_name_bytes(path) + firestore_value_bytes(dict(data)) + 32


def _index_leaves(
    data: Mapping[str, Any], prefix: str = "", exempt: Collection[str] = frozenset()
) -> Iterator[tuple[str, Any, int]]:
    """(field path, value, entries) of every automatically indexed field: maps are indexed by
    their fields, an array by its elements (array-contains), any other value twice (asc, desc).
    A field path in ``exempt`` has no entries, nor have its subfields."""
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if name in exempt:
            continue
        if isinstance(value, Mapping):
            yield from _index_leaves(value, name, exempt)
        elif isinstance(value, list):
            for element in value:
                yield name, element, 1
        else:
            yield name, value, 2


def collection_group(path: str) -> str:
    """The collection group of a document: the last collection id of its path
    (``devices/d/plans/p`` -> ``plans``)."""
    return path.split("/")[-2]


def firestore_index_bytes(
    path: str, data: Mapping[str, Any], exemptions: Collection[tuple[str, str]] = frozenset()
) -> int:
    """An estimate of a document's single-field index entries: each the document's name, its
    parent's name, the field path, the value and 32 bytes. A (collection group, field path) in
    ``exemptions`` (:func:`firestore_index_exemptions`) has none, nor have its subfields."""
    own = firestore_name_bytes(path)
    parent_path = path.rsplit("/", 2)[0] if path.count("/") >= 3 else ""
    parent = firestore_name_bytes(parent_path) if parent_path else 16
    group = collection_group(path)
    exempt = {field for collection, field in exemptions if collection == group}
    return sum(
        entries * (own + parent + firestore_string_bytes(name) + firestore_value_bytes(value) + 32)
        for name, value, entries in _index_leaves(data, exempt=exempt)
    )


TERRAFORM_FIRESTORE = Path(__file__).resolve().parents[1] / "terraform" / "firestore.tf"
_FIELD_RESOURCE = re.compile(
    r'^resource "google_firestore_field" "\w+" \{\n(.*?)^\}', re.MULTILINE | re.DOTALL
)


def terraform_index_exemptions(text: str) -> frozenset[tuple[str, str]]:
    """(collection group, field path) of every ``google_firestore_field`` whose ``index_config``
    is empty: Firestore keeps no single-field index entries for that field (nor, for a map, its
    subfields). An ``index_config`` that lists indexes replaces the inherited ones (it is no
    exemption); a field resource without one (a TTL policy alone) keeps them."""
    found = set()
    for body in _FIELD_RESOURCE.findall(text):
        collection = re.search(r'^\s*collection\s*=\s*"([^"]+)"', body, re.MULTILINE)
        field = re.search(r'^\s*field\s*=\s*"([^"]+)"', body, re.MULTILINE)
        if collection and field and re.search(r"^\s*index_config\s*\{\s*\}", body, re.MULTILINE):
            found.add((collection.group(1), field.group(1)))
    return frozenset(found)


def firestore_index_exemptions(path: Path = TERRAFORM_FIRESTORE) -> frozenset[tuple[str, str]]:
    """The exemptions ``terraform/firestore.tf`` declares (none if it cannot be read)."""
    return terraform_index_exemptions(path.read_text()) if path.exists() else frozenset()


def pubsub_message_bytes(data: bytes, attributes: Mapping[str, str]) -> int:
    """Pub/Sub's data volume of one message."""
    sized = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
    return len(data) + sized + PUBSUB_TIMESTAMP_BYTES + PUBSUB_MESSAGE_ID_BYTES


def pubsub_billed_bytes(message_bytes: int) -> int:
    """One message per request: at least 1,000 bytes."""
    return max(PUBSUB_MIN_BYTES, message_bytes)


def bigquery_row_bytes(row: Mapping[str, Any]) -> int:
    """BigQuery's logical size of a row: STRING 2 + UTF-8 bytes, numbers and times 8, BOOL 1,
    JSON (maps, lists) its text; NULL nothing."""
    size = 0
    for value in row.values():
        if value is None:
            continue
        if isinstance(value, bool):
            size += 1
        elif isinstance(value, int | float | datetime | date):
            size += 8
        elif isinstance(value, str):
            size += 2 + len(value.encode())
        else:
            size += 2 + len(json.dumps(value, default=str).encode())
    return size


def requests_per_device(invocations: float, homes: int, scaling: Scaling, fleet: int) -> float:
    """Requests a device causes, from ``invocations`` measured with ``homes`` homes: one per
    device event, one per page of ``scaling.page`` devices per run, or the project's own."""
    if scaling.kind == "device":
        return invocations / homes
    if scaling.kind == "page":
        runs = invocations / math.ceil(homes / scaling.page)
        return runs * math.ceil(fleet / scaling.page) / fleet
    return invocations / fleet


# -- the functions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scaling:
    kind: str
    """``device``: one request per device event; ``page``: one per ``page`` devices per run;
    ``project``: a fixed number for the project."""
    page: int = 1


@dataclass(frozen=True, slots=True)
class FunctionResources:
    memory_gib: float
    vcpu: float
    concurrency: int
    source: str


TERRAFORM_FUNCTIONS = Path(__file__).resolve().parents[1] / "terraform" / "functions.tf"
_ASSUMED = "assumed (terraform/functions.tf not found): gen2 defaults for the memory"
FALLBACK_FUNCTIONS: dict[str, FunctionResources] = {
    entry: FunctionResources(0.5, 0.333, 1, _ASSUMED)
    for entry in (
        "dispatch",
        "sweep_commands",
        "ingest_prices",
        "ingest_weather",
        "optimize_trigger",
        "reconcile",
        "ingest_telemetry",
    )
} | {"optimize_shard": FunctionResources(2.0, 1.0, 1, _ASSUMED)}
_FUNCTION_BLOCK = re.compile(r"^ {4}(\w+) = \{\n(.*?)^ {4}\}", re.MULTILINE | re.DOTALL)
_MEMORY_UNITS = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1.0, "M": 1e6 / GIB, "G": 1e9 / GIB}


def terraform_functions(text: str, source: str = "terraform") -> dict[str, FunctionResources]:
    """Memory, vCPU and requests per instance of each function in terraform's ``functions``
    map (entries with ``memory``, ``cpu`` and ``concurrency`` lines)."""
    found = {}
    for name, body in _FUNCTION_BLOCK.findall(text):
        memory = re.search(r'memory\s*=\s*"(\d+(?:\.\d+)?)([KMG]i?)"', body)
        cpu = re.search(r'cpu\s*=\s*"(\d+(?:\.\d+)?)"', body)
        concurrency = re.search(r"concurrency\s*=\s*(\d+)", body)
        if memory and cpu and concurrency:
            found[name] = FunctionResources(
                float(memory.group(1)) * _MEMORY_UNITS[memory.group(2)],
                float(cpu.group(1)),
                int(concurrency.group(1)),
                source,
            )
    return found


def function_resources(path: Path = TERRAFORM_FUNCTIONS) -> dict[str, FunctionResources]:
    """Terraform's sizing where it has it, the assumed sizing for the rest."""
    found = terraform_functions(path.read_text(), str(path.name)) if path.exists() else {}
    return FALLBACK_FUNCTIONS | found


def _workers(entry: str, setting: str, functions: Path) -> int:
    """``HPSTEER_<SETTING>`` in terraform's ``entry`` entry, else the setting's default."""
    from hpsteer.config import Settings

    if functions.exists():
        variable = f"HPSTEER_{setting.upper()}"
        for name, body in _FUNCTION_BLOCK.findall(functions.read_text()):
            found = re.search(variable + r'\s*=\s*"?(\d+)"?', body)
            if name == entry and found:
                return int(found.group(1))
    default = Settings.model_fields[setting].default
    return int(default)


def reconcile_workers(functions: Path = TERRAFORM_FUNCTIONS) -> int:
    """Devices one reconcile page reconciles at once in production: ``HPSTEER_RECONCILE_WORKERS``
    in terraform's reconcile entry, else the setting's default."""
    return _workers("reconcile", "reconcile_workers", functions)


def optimize_io_workers(functions: Path = TERRAFORM_FUNCTIONS) -> int:
    """Devices of one optimize shard whose reads and writes run at once in production:
    ``HPSTEER_OPTIMIZE_IO_WORKERS`` in terraform's optimize_shard entry, else the setting's
    default."""
    return _workers("optimize_shard", "optimize_io_workers", functions)


def sweep_workers(functions: Path = TERRAFORM_FUNCTIONS) -> int:
    """Due plan releases the command sweep settles at once in production:
    ``HPSTEER_SWEEP_WORKERS`` in terraform's sweep_commands entry, else the setting's default."""
    return _workers("sweep_commands", "sweep_workers", functions)


TERRAFORM_VARIABLES = TERRAFORM_FUNCTIONS.with_name("variables.tf")
FALLBACK_MAX_INSTANCES: dict[str, int] = {"dispatch": 20, "reconcile": 20}
"""terraform/functions.tf's values when it cannot be read."""


def terraform_max_instances(text: str, variables: str = "") -> dict[str, int]:
    """``max_instances`` of each entry of terraform's ``functions`` map: a number, or a variable
    (``var.x``) whose ``default`` in ``variables`` is one."""
    defaults = {
        name: int(value)
        for name, value in re.findall(
            r'variable "(\w+)" \{[^}]*?default\s*=\s*(\d+)', variables, re.DOTALL
        )
    }
    found = {}
    for name, body in _FUNCTION_BLOCK.findall(text):
        match = re.search(r"max_instances\s*=\s*(?:(\d+)|var\.(\w+))", body)
        if match and match.group(1):
            found[name] = int(match.group(1))
        elif match and match.group(2) in defaults:
            found[name] = defaults[match.group(2)]
    return found


def function_max_instances(
    functions: Path = TERRAFORM_FUNCTIONS, variables: Path = TERRAFORM_VARIABLES
) -> dict[str, int]:
    """Every entry point's ``max_instances`` as terraform sets it (none found: the fallback)."""
    if not functions.exists():
        return dict(FALLBACK_MAX_INSTANCES)
    text = variables.read_text() if variables.exists() else ""
    return FALLBACK_MAX_INSTANCES | terraform_max_instances(functions.read_text(), text)


def credential_instance_starts_per_month(
    functions: Path = TERRAFORM_FUNCTIONS, variables: Path = TERRAFORM_VARIABLES
) -> tuple[float, dict[str, int]]:
    """Instance starts a month of the functions serving the entry points that read credentials
    (module docstring): each function's ``max_instances`` restarted every
    :data:`INSTANCE_LIFETIME_S`, once however many of those entry points it serves."""
    found = {}
    if functions.exists():
        found = terraform_max_instances(
            functions.read_text(), variables.read_text() if variables.exists() else ""
        )
    serving = sorted({serving_function(e) for e in CREDENTIAL_ENTRY_POINTS})
    slots = {f: found.get(f, FALLBACK_MAX_INSTANCES[f]) for f in serving}
    restarts_per_slot = DAYS_PER_MONTH * 86_400 / INSTANCE_LIFETIME_S
    return sum(slots.values()) * restarts_per_slot, slots


ENTRY_SCALING: dict[tuple[str, str], Scaling] = {
    ("dispatch", "dispatch"): Scaling("device"),
    ("dispatch", "verify"): Scaling("device"),
    ("dispatch", "sweep_commands"): Scaling("project"),
    ("ingest_telemetry", "ingest_telemetry"): Scaling("device"),
    ("reconcile", "reconcile"): Scaling("page", 200),
    ("optimize", "optimize_shard"): Scaling("page", 100),
    ("optimize", "optimize_trigger"): Scaling("project"),
    ("ingest_prices", "ingest_prices"): Scaling("project"),
    ("ingest_weather", "ingest_weather"): Scaling("project"),
}
PER_PAGE_DOCUMENTS = frozenset({("reconcile", "reconcile_runs/{id}")})
"""(entry, collection) of the documents an entry point reads and writes once per page, not per
device: counted per page of the fleet (:data:`ENTRY_SCALING`), not per simulated device."""
PROJECT_SCOPED = frozenset({"ingest_prices", "ingest_weather", "scheduler"})
"""Work that does not grow with the fleet (one area's prices and weather, the scheduler)."""
LATENCY_S: dict[str, float] = {
    "store": 0.008,
    "publish": 0.010,
    "task": 0.020,
    "analytics": 0.050,
    "secret": 0.020,
    "manufacturer": 0.300,
}
"""Assumed round trip of one remote call from a function in europe-west1 (not measured)."""


@dataclass
class Invocations:
    count: int = 0
    compute_s: float = 0.0
    io_s: float = 0.0
    """The requests' assumed waits on their critical paths (:class:`Meter`): what is billed."""
    serial_io_s: float = 0.0
    """Every remote call's assumed wait added up, as if each request made its calls one after
    another (the what-if ``remote_calls_one_after_another``)."""


@dataclass(frozen=True, slots=True)
class FunctionUsage:
    requests: float
    vcpu_s: float
    gib_s: float


AUTOSCALE_TARGET = 0.6
"""Cloud Run's autoscaler adds instances to keep each one's requests in flight at 60 % of its
maximum concurrency (and its CPU at 60 %), over a one-minute window
(https://cloud.google.com/run/docs/about-instance-autoscaling)."""
DEFAULT_MAX_INSTANCES = 100
"""Cloud Run's default, for an entry point terraform does not cap."""


def fleet_in_flight(
    measured: Invocations,
    scaling: Scaling,
    size: FunctionResources,
    *,
    homes: int,
    fleet: int,
    period_s: float,
) -> float:
    """Requests of one entry point running at once across the fleet (Little's law): a device
    event's rate times one request's duration; every page of a run at once (a run's pages are
    published together); one at a time for the project's own triggers."""
    if measured.count == 0:
        return 0.0
    if scaling.kind == "page":
        return float(math.ceil(fleet / scaling.page))
    if scaling.kind == "project":
        return 1.0
    duration = (measured.compute_s / size.vcpu + measured.io_s) / measured.count
    return measured.count / homes * fleet / period_s * duration


def effective_concurrency(in_flight: float, size: FunctionResources, max_instances: int) -> float:
    """Requests an instance serves at once at fleet scale: the autoscaler's instances
    (:data:`AUTOSCALE_TARGET` of the maximum concurrency each, at most ``max_instances``) share
    what is in flight; past ``max_instances`` the requests wait their turn (Pub/Sub and Cloud
    Tasks retry) and every slot is busy. Never below one request."""
    if in_flight <= 1.0:
        return 1.0
    wanted = math.ceil(in_flight / (AUTOSCALE_TARGET * size.concurrency))
    instances = min(max(1, max_instances), max(1, wanted))
    return max(1.0, min(float(size.concurrency), in_flight / instances))


@dataclass(frozen=True, slots=True)
class EntryLoad:
    in_flight: float
    """The entry point's own requests running at once across the fleet (:func:`fleet_in_flight`)."""
    function_in_flight: float
    """Those of every entry point its function serves (:data:`SERVED_BY`), added up: what the
    function's instances share."""
    concurrency: float
    """Requests an instance of its function really serves at once: the
    :func:`effective_concurrency` of ``function_in_flight``."""


def entry_loads(
    function: str,
    entries: Mapping[str, Invocations],
    homes: int,
    fleet: int,
    resources: Mapping[str, FunctionResources],
    *,
    period_s: float,
    max_instances: Mapping[str, int],
) -> dict[str, EntryLoad]:
    """Each of one function folder's entry points' load at fleet scale. Entry points served by
    one Cloud Function (:func:`serving_function`: verify by dispatch) share its instances: their
    requests in flight are pooled, and the autoscaler sizes that function's instances
    (``resources`` and ``max_instances`` are keyed by terraform's function names) for the pool,
    so each of them is served at the pool's concurrency."""
    own = {
        entry: fleet_in_flight(
            measured,
            ENTRY_SCALING.get((function, entry), Scaling("device")),
            resources[serving_function(entry)],
            homes=homes,
            fleet=fleet,
            period_s=period_s,
        )
        for entry, measured in entries.items()
    }
    pooled: defaultdict[str, float] = defaultdict(float)
    for entry, in_flight in own.items():
        pooled[serving_function(entry)] += in_flight
    loads = {}
    for entry, in_flight in own.items():
        served = serving_function(entry)
        cap = max_instances.get(served, DEFAULT_MAX_INSTANCES)
        shared = effective_concurrency(pooled[served], resources[served], cap)
        loads[entry] = EntryLoad(in_flight, pooled[served], shared)
    return loads


def function_usage(
    function: str,
    entries: Mapping[str, Invocations],
    homes: int,
    fleet: int,
    resources: Mapping[str, FunctionResources],
    *,
    period_s: float,
    max_instances: Mapping[str, int],
) -> tuple[FunctionUsage, FunctionUsage]:
    """(per device, per project) requests, vCPU-seconds and GiB-seconds of one function folder's
    entry points over the measured period (``period_s`` seconds).

    Request-based billing charges an instance while it processes at least one request: requests
    that overlap on one instance are billed once, not each
    (https://cloud.google.com/run/docs/configuring/billing-settings). So an entry point's billed
    instance time is its requests' summed durations (CPU work stretched by the vCPU share, plus
    the remote waits) divided by the requests an instance of the function serving it really
    serves at once (:func:`entry_loads`: from the fleet's load of every entry point that function
    serves and terraform's concurrency and ``max_instances``), never less than its CPU work on
    the instance's vCPUs, plus 100 ms rounding per busy period."""
    device = [0.0, 0.0, 0.0]  # requests, vCPU-seconds, GiB-seconds
    project = [0.0, 0.0, 0.0]
    loads = entry_loads(
        function,
        entries,
        homes,
        fleet,
        resources,
        period_s=period_s,
        max_instances=max_instances,
    )
    for entry, measured in entries.items():
        size = resources[serving_function(entry)]
        scaling = ENTRY_SCALING.get((function, entry), Scaling("device"))
        shared = loads[entry].concurrency
        cpu_s = measured.compute_s / size.vcpu
        instance_s = max((cpu_s + measured.io_s) / shared, cpu_s)
        if function not in PROJECT_SCOPED:
            instance_s /= homes
        if scaling.kind == "project":
            requests = float(measured.count)
            project[0] += requests
            project_s = ROUNDING_S * requests / shared
            project[1] += project_s * size.vcpu
            project[2] += project_s * size.memory_gib
        else:
            requests = requests_per_device(measured.count, homes, scaling, fleet)
            device[0] += requests
            instance_s += ROUNDING_S * requests / shared
        work = project if function in PROJECT_SCOPED else device
        work[1] += instance_s * size.vcpu
        work[2] += instance_s * size.memory_gib
    return FunctionUsage(*device), FunctionUsage(*project)


# -- the measurement --------------------------------------------------------------------------


UNCOUNTED_PHASES = frozenset({"setup", "observer", "settle"})
"""Store phases outside the measured days' functions (registration, observation, settling)."""
_NOT_A_CALLER = ("hpsteer.backends.", "hpsteer.ports.", "hpsteer.runtime.")


def collection_pattern(path: str) -> str:
    """``devices/{id}/commands/{id}`` for ``devices/home-3/commands/c-17``: a document path with
    its ids elided; a collection (a query's) gets `` (query)``."""
    parts = path.strip("/").split("/")
    shaped = "/".join(part if i % 2 == 0 else "{id}" for i, part in enumerate(parts))
    return shaped if len(parts) % 2 == 0 else f"{shaped} (query)"


def code_path(skip: int = 2) -> str:
    """``services.reconcile:save``: the innermost frame of hpsteer's own code (not a backend,
    a port or the local runtime) on the stack above the caller's ``skip`` frames."""
    frame: FrameType | None = sys._getframe(skip)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("hpsteer.") and not module.startswith(_NOT_A_CALLER):
            return f"{module.removeprefix('hpsteer.')}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "(outside hpsteer)"


class _PathTally(Tally):
    """A tally that also remembers every document written (for the stored size at the end) and
    what each operation was: entry point, code path and collection (the breakdown)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: set[str] = set()
        self.credentials: Counter[str] = Counter()
        """Operations on the households' credentials documents, by operation (measured days)."""
        self.entry_of: Callable[[], str] = lambda: "?"
        """The entry point running now (set once the meter exists)."""
        self.paths: Counter[tuple[str, str, str, str, str]] = Counter()
        """(function, entry, code path, collection pattern, operation) -> documents."""
        self.billed: Callable[[int], None] = lambda n: None
        """Told of every billed operation (reads and writes), in the thread that made it (the
        meter's :meth:`Meter.store_operations`, once the meter exists)."""

    def add(self, phase: str, path: str, operation: str, n: int = 1) -> None:
        super().add(phase, path, operation, n)
        if operation in ("read", "write"):
            self.billed(n)
        if operation == "write":
            self.written.add(path)
        parts = path.split("/")
        counted = phase not in UNCOUNTED_PHASES
        if counted:
            key = (phase, self.entry_of(), code_path(), collection_pattern(path), operation)
            self.paths[key] += n
        if (
            counted
            and len(parts) == 4
            and parts[0] == "manufacturers"
            and parts[2] == "credentials"
        ):
            self.credentials[operation] += n


MAIN_LANE = "main"
"""The critical-path lane of the thread that runs a request (:class:`Meter`)."""


@dataclass
class _Frame:
    """One request being served: its time, and its assumed waits by lane (:class:`Meter`)."""

    function: str
    entry: str
    began: float
    thread: int
    """The thread that runs the request (``threading.get_ident``)."""
    counted: bool = True
    outside_s: float = 0.0
    waits: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Assumed seconds waited by lane: :data:`MAIN_LANE`, ``thread-<id>`` for each other thread
    that worked for the request, ``lane-<k>`` for a unit given a modelled worker lane."""
    io_by_kind: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    unit_lane: str | None = None
    """The modelled lane of the unit running on the request's own thread now, if any."""

    @property
    def critical_s(self) -> float:
        """The request's wait: its own thread's, plus the longest of the lanes that worked for
        it meanwhile (it waits for them all, as a pool's ``map`` does)."""
        others = [w for lane, w in self.waits.items() if lane != MAIN_LANE]
        return self.waits[MAIN_LANE] + max(others, default=0.0)

    @property
    def serial_s(self) -> float:
        """Every wait added up: the request's calls one after another."""
        return sum(self.waits.values())


@dataclass
class Meter:
    """Counts by scope (``device`` or ``project``) and key, and the invocations per entry.

    **Waits on the critical path.** Every remote call's assumed round trip (:data:`LATENCY_S`,
    store operations included) goes to a lane of the request being served (the innermost
    frame): the request's own thread (:data:`MAIN_LANE`), or each other thread that works for
    it (a thread pool's workers: ``threading.get_ident``). A request waits for its own thread's
    calls plus the longest of the other lanes (:attr:`_Frame.critical_s`): the threads run at
    the same time and the request waits for the last. Work that production runs on a pool but a
    reproducible simulation runs one unit after another (reconcile's devices, optimize's
    devices' preparing and completing: the local runtime handles them in order so its seeded
    faults and its writes stay reproducible) is modelled with :meth:`unit`: each unit on the
    request's own thread goes to the one of its pool's lanes (:attr:`unit_lanes` unless the
    unit says how many) that is free first (the least waited so far, the lowest on a tie),
    which is how a pool of that many workers hands out its queue in order when waiting is what
    takes the time. CPU work is not spread: it stays the request's handler time, on the entry
    point's vCPUs.
    """

    active: Callable[[], bool]
    store: PhasedCountingStore
    counts: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    invocations: dict[tuple[str, str], Invocations] = field(default_factory=dict)
    stack: list[_Frame] = field(default_factory=list)
    secrets_read: set[tuple[str, str]] = field(default_factory=set)
    """(name, version) of every secret read so far: this run's instances read each once."""
    io_by_entry: defaultdict[tuple[str, str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    """(function, entry, kind of remote call) -> assumed seconds waited (the breakdown; every
    call's wait, whichever lane it was on)."""
    log_lines: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(function, entry, source: logger and message template or metric) -> lines."""
    log_bytes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    publishes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(function, entry, topic) -> messages published."""
    unit_lanes: int = 1
    """Worker lanes a :meth:`unit` is given to (1: units wait one after another)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def current(self) -> str | None:
        return self.stack[-1].function if self.stack else None

    @property
    def where(self) -> tuple[str, str]:
        """(function, entry) running now; the scheduler's when none is."""
        return (self.stack[-1].function, self.stack[-1].entry) if self.stack else ("scheduler", "")

    def scope(self, function: str | None) -> str:
        return "project" if (function or "scheduler") in PROJECT_SCOPED else "device"

    def _lane(self, frame: _Frame) -> str:
        thread = threading.get_ident()
        if thread != frame.thread:
            return f"thread-{thread}"
        return frame.unit_lane or MAIN_LANE

    def _wait(self, frame: _Frame, kind: str, seconds: float) -> None:
        frame.waits[self._lane(frame)] += seconds
        frame.io_by_kind[kind] += seconds

    def add(self, key: str, amount: float = 1.0, latency: str | None = None) -> None:
        if not self.active():
            return
        with self._lock:
            self.counts[(self.scope(self.current), key)] += amount
            if latency is not None and self.stack:
                waited = LATENCY_S[latency] * (amount if latency == "store" else 1)
                self._wait(self.stack[-1], latency, waited)

    def store_operations(self, n: int) -> None:
        """``n`` billed document operations (reads and writes) of the request being served."""
        with self._lock:
            if self.stack and self.stack[-1].counted:
                self._wait(self.stack[-1], "store", n * LATENCY_S["store"])

    @contextmanager
    def unit(self, lanes: int | None = None) -> Iterator[None]:
        """One unit of work that production hands to a pool of ``lanes`` workers (default
        :attr:`unit_lanes`; see the class docstring); on another thread than the request's,
        that thread is its lane."""
        workers = self.unit_lanes if lanes is None else lanes
        with self._lock:
            frame = self.stack[-1] if self.stack else None
            if frame is None or frame.thread != threading.get_ident() or frame.unit_lane:
                frame = None
            else:
                lanes_ = [f"lane-{k}" for k in range(max(1, workers))]
                frame.unit_lane = min(lanes_, key=lambda lane: frame.waits.get(lane, 0.0))
        try:
            yield
        finally:
            if frame is not None:
                frame.unit_lane = None

    @contextmanager
    def outside(self) -> Iterator[None]:
        """Time spent in the simulated manufacturers: not the function's work."""
        began = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                if self.stack:
                    self.stack[-1].outside_s += time.perf_counter() - began

    @contextmanager
    def invocation(self, function: str, entry: str) -> Iterator[None]:
        counted = self.active()
        previous = self.store.phase
        self.store.phase = function if counted else "settle"
        began = time.perf_counter()
        with self._lock:
            self.stack.append(_Frame(function, entry, began, threading.get_ident(), counted))
        try:
            yield
        finally:
            with self._lock:
                frame = self.stack.pop()
            self.store.phase = previous
            if counted:
                measured = self.invocations.setdefault((function, entry), Invocations())
                measured.count += 1
                measured.compute_s += time.perf_counter() - frame.began - frame.outside_s
                measured.io_s += frame.critical_s
                measured.serial_io_s += frame.serial_s
                for kind, waited in frame.io_by_kind.items():
                    self.io_by_entry[(function, entry, kind)] += waited
            if self.stack:  # a nested call's time is its own
                self.stack[-1].outside_s += time.perf_counter() - frame.began


class _FollowingClock:
    """The store's clock: the simulation's once it exists (it is built with the store)."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.target: Any = None

    def now(self) -> datetime:
        return self.target.now() if self.target is not None else self.start


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def _instrument(simulation: Any, meter: Meter) -> None:
    """Counting wrappers around the bus, the task queue, analytics, secrets, the manufacturers'
    transport, task deliveries and the observer's reads."""
    local = simulation.local
    deps = local.deps

    def publish(inner: Callable[..., str]) -> Callable[..., str]:
        def counted(topic: str, data: bytes, **kwargs: Any) -> str:
            attributes = kwargs.get("attributes") or {}
            meter.add("pubsub_publishes", 1, "publish")
            if meter.active():
                meter.publishes[(*meter.where, str(topic))] += 1
            meter.add("pubsub_bytes", pubsub_billed_bytes(pubsub_message_bytes(data, attributes)))
            if topic == "alerts":  # its notification subscription gets it too
                meter.add("pubsub_bytes", pubsub_billed_bytes(len(data)))
            return inner(topic, data, **kwargs)

        return counted

    def create_task(inner: Callable[..., Any]) -> Callable[..., Any]:
        def counted(task: Any) -> Any:
            meter.add("tasks_operations", 1, "task")
            return inner(task)

        return counted

    def delete_task(inner: Callable[..., bool]) -> Callable[..., bool]:
        def counted(queue: str, name: str) -> bool:
            meter.add("tasks_operations", 1, "task")
            return inner(queue, name)

        return counted

    def append(inner: Callable[..., None]) -> Callable[..., None]:
        def counted(table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Any) -> None:
            meter.add("bigquery_requests", 1, "analytics")
            for row in rows:
                size = bigquery_row_bytes(row)
                meter.add("bigquery_rows")
                meter.add("bigquery_bytes", size)
                meter.add("bigquery_billed_bytes", max(BIGQUERY_MIN_ROW_BYTES, size))
            inner(table, rows, insert_ids)

        return counted

    def secret_get(inner: Callable[..., Any]) -> Callable[..., Any]:
        def counted(name: str, version: str = "latest") -> Any:
            if (name, version) in meter.secrets_read:
                meter.add("secret_accesses", 1, "secret")  # read again: per request
            else:
                meter.secrets_read.add((name, version))  # once per instance (module docstring)
                meter.add("secret_first_reads", 1, "secret")
            return inner(name, version)

        return counted

    def secret_add(inner: Callable[..., str]) -> Callable[..., str]:
        def counted(name: str, payload: bytes) -> str:
            meter.add("secret_versions_added", 1, "secret")
            return inner(name, payload)

        return counted

    def handle_request(inner: Callable[..., Any]) -> Callable[..., Any]:
        def counted(request: Any) -> Any:
            meter.add("manufacturer_calls", 1, "manufacturer")
            with meter.outside():
                return inner(request)

        return counted

    def deliver_once(inner: Callable[..., Any]) -> Callable[..., Any]:
        verify_path = deps.settings.verify_url.rsplit("/", 1)[-1]

        def counted(request: Any) -> Any:
            meter.add("tasks_operations")  # a push delivery attempt
            entry = "verify" if request.url.rstrip("/").endswith(verify_path) else "dispatch"
            with meter.invocation("dispatch", entry):
                return inner(request)

        return counted

    def sample(inner: Callable[..., None]) -> Callable[..., None]:
        def uncounted(at: datetime) -> None:
            previous, meter.store.phase = meter.store.phase, "observer"
            try:
                inner(at)
            finally:
                meter.store.phase = previous

        return uncounted

    def secret_destroy(inner: Callable[..., None]) -> Callable[..., None]:
        def counted(name: str, version: str) -> None:
            meter.add("secret_versions_destroyed", 1, "secret")
            inner(name, version)

        return counted

    _wrap(deps.bus, "publish", publish)
    _wrap(deps.tasks, "create_task", create_task)
    _wrap(deps.tasks, "delete_task", delete_task)
    _wrap(deps.analytics, "append", append)
    _wrap(deps.secrets, "get", secret_get)
    _wrap(deps.secrets, "add_version", secret_add)
    _wrap(deps.secrets, "destroy_version", secret_destroy)
    _wrap(local.gateway.context.transport, "handle_request", handle_request)
    _wrap(local, "_deliver_once", deliver_once)
    _wrap(simulation.observer, "sample", sample)


def _metered_simulation_class() -> Any:
    """:class:`Simulation` whose Pub/Sub handlers are metered (one invocation per handler call,
    each a push delivery of the message)."""
    from cloudevents.http import CloudEvent

    from hpsteer.domain.messages import Topic
    from hpsteer.runtime.simulation.engine import Simulation
    from hpsteer.runtime.simulation.topology import TRIGGERS

    entries = {t.topic: (t.function, t.entry_point) for t in TRIGGERS}

    class MeteredSimulation(Simulation):
        meter: Meter | None = None

        def _subscriber(
            self, topic: Topic, entry: Callable[[CloudEvent], None]
        ) -> Callable[[CloudEvent], None]:
            function, entry_point = entries[topic]

            def metered(event: CloudEvent) -> None:
                meter = self.meter
                if meter is None:
                    return entry(event)
                with meter.invocation(function, entry_point):
                    message = event.data["message"]
                    data = base64.b64decode(message.get("data", ""))
                    size = pubsub_message_bytes(data, message.get("attributes") or {})
                    meter.add("pubsub_bytes", pubsub_billed_bytes(size))
                    meter.add("pubsub_deliveries")
                    return entry(event)

            return super()._subscriber(topic, metered)

    return MeteredSimulation


def log_source(record: logging.LogRecord) -> str:
    """Where a line comes from: its logger and message template (``%s`` unfilled), or for a
    metric record the metric's name."""
    from hpsteer.observability.metric_records import LOGGER_NAME, METRIC_FIELD

    if record.name == LOGGER_NAME:
        return f"metric record {getattr(record, METRIC_FIELD, '?')}"
    return f"{record.name.removeprefix('hpsteer.')}: {str(record.msg)[:80]}"


class _LogBytes(logging.Handler):
    """Counts the bytes of the JSON lines the handlers log (one per record, newline included)."""

    _SIMULATION = ("hpsteer.sim", "hpsteer.runtime.simulation", "hpsteer.backends.local")
    _METRIC_RECORDS = "hpsteer.metrics"

    def __init__(self, meter: Meter) -> None:
        from hpsteer.observability.logging import JsonFormatter

        super().__init__(logging.INFO)
        self.meter = meter
        self.setFormatter(JsonFormatter("hpsteer-prod"))

    def emit(self, record: logging.LogRecord) -> None:
        if self.meter.current is None or record.name.startswith(self._SIMULATION):
            return
        size = len(self.format(record).encode()) + 1
        if record.name == self._METRIC_RECORDS:  # excluded from the log buckets: not billed
            self.meter.add("metric_record_lines")
            self.meter.add("metric_record_bytes", size)
        else:
            self.meter.add("log_lines")
            self.meter.add("log_bytes", size)
        if self.meter.active():
            key = (*self.meter.where, log_source(record))
            self.meter.log_lines[key] += 1
            self.meter.log_bytes[key] += size


class _SpanCounter:
    """An exporter that counts spans (all are exported: sampling is applied in the pricing)."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult
        from opentelemetry.trace import StatusCode

        for span in spans:
            error = span.status.status_code is StatusCode.ERROR
            self.meter.add("spans_error" if error else "spans_ok")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@dataclass
class Run:
    """What one metered simulation counted."""

    homes: int
    days: int
    seed: int
    area: str
    wall_s: float
    commands: int
    meter: Meter
    tally: _PathTally
    stored_bytes: int
    index_bytes: int
    documents: int
    project_secret_versions: int
    """Active versions at the end of the run, plus :data:`SERVICE_SECRET_VERSIONS`."""
    index_exemptions: frozenset[tuple[str, str]] = frozenset()
    """(collection group, field path) without index entries (``terraform/firestore.tf``)."""


def measure_run(homes: int, days: int, seed: int = 0) -> Run:
    """The simulation with every billed port counted (see the module docstring)."""
    from hpsteer.backends.local.store import LocalDocumentStore
    from hpsteer.observability.logging import CHATTY_LIBRARIES, configure_logging
    from hpsteer.observability.tracing import configure_tracing
    from hpsteer.runtime.simulation.options import SimulationOptions, check_options

    with TemporaryDirectory() as out:
        options = SimulationOptions(
            area=PriceArea.SE3,
            start=date(2023, 1, 9),
            days=days,
            devices=homes,
            seed=seed,
            faults="realistic",
            out=Path(out),
            planning_processes=1,  # the planner in this process: its time is its CPU time
        )
        data = check_options(options)
        clock = _FollowingClock(options.start_at)
        store = PhasedCountingStore(LocalDocumentStore(clock=clock))
        tally = _PathTally()
        store.tally = tally
        simulation = _metered_simulation_class().build(options, data, store=store)
        clock.target = simulation.local.clock
        end = options.end_at
        meter = Meter(lambda: simulation.local.clock.now() < end, store)
        tally.entry_of = lambda: meter.stack[-1].entry if meter.stack else "scheduler"
        tally.billed = meter.store_operations
        meter.unit_lanes = reconcile_workers()
        simulation.meter = meter
        _instrument(simulation, meter)
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        libraries = {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES}
        configure_logging("INFO", stream=io.StringIO())  # the functions' logging setup
        root.handlers[:] = [_LogBytes(meter)]
        configure_tracing(_SpanCounter(meter), sample_rate=1.0, batch=False)
        from hpsteer.services import optimize as optimize_service
        from hpsteer.services import outbox as outbox_service
        from hpsteer.services import reconcile as reconcile_service

        device = reconcile_service.reconcile_device
        prepare, finish = optimize_service._Shard.prepare, optimize_service._finish
        shard_lanes = optimize_io_workers()
        sweep_release, release_lanes = outbox_service._sweep_release, sweep_workers()
        _wrap(reconcile_service, "reconcile_device", lambda inner: _as_unit(meter, inner))
        _wrap(outbox_service, "_sweep_release", lambda inner: _as_unit(meter, inner, release_lanes))
        for owner, name in ((optimize_service._Shard, "prepare"), (optimize_service, "_finish")):
            _wrap(owner, name, lambda inner: _as_unit(meter, inner, shard_lanes))
        try:
            simulation.run()
        finally:
            reconcile_service.reconcile_device = device
            outbox_service._sweep_release = sweep_release
            optimize_service._Shard.prepare = prepare  # type: ignore[method-assign]
            optimize_service._finish = finish
            configure_tracing(None)
            root.handlers[:] = handlers
            root.setLevel(level)
            for name, library_level in libraries.items():
                logging.getLogger(name).setLevel(library_level)
        stored = index = documents = 0
        exemptions = firestore_index_exemptions()
        for path in sorted(tally.written):
            if path.count("/") % 2 == 0:
                continue  # a collection (never written) or a malformed path
            document = store.inner.get(path)
            if document is not None:
                documents += 1
                stored += firestore_document_bytes(path, document.data)
                index += firestore_index_bytes(path, document.data, exemptions)
        versions = _active_versions(simulation.local.deps.secrets) + SERVICE_SECRET_VERSIONS
        commands = int(sum(f["commands_received"] for f in simulation.home_figures.values()))
        return Run(
            homes,
            days,
            seed,
            options.area.value,
            simulation.wall_s,
            commands,
            meter,
            tally,
            stored,
            index,
            documents,
            versions,
            exemptions,
        )


def _as_unit(
    meter: Meter, inner: Callable[..., Any], lanes: int | None = None
) -> Callable[..., Any]:
    """``inner`` (one reconcile device; one optimize device's preparing or completing; one due
    plan release the command sweep settles) as a :meth:`Meter.unit` of a pool of ``lanes``
    (default :attr:`Meter.unit_lanes`): production runs a page's, a shard's or a sweep's units on
    its workers, the simulation one after another."""

    def unit(*args: Any, **kwargs: Any) -> Any:
        with meter.unit(lanes):
            return inner(*args, **kwargs)

    return unit


def _active_versions(secrets: Any) -> int:
    """Versions not destroyed of the secrets the simulation holds: each manufacturer's app
    credentials and the credentials data key (what :meth:`Fleet.seed_credentials` adds)."""
    from hpsteer.adapters.credentials import KEY_SECRET
    from hpsteer.adapters.daikin_onecta import client as onecta
    from hpsteer.adapters.nibe_myuplink import client as myuplink
    from hpsteer.adapters.viessmann import client as vicare
    from hpsteer.errors import SecretNotFound

    def get(name: str, version: str = "latest") -> Any:
        return type(secrets).get(secrets, name, version)  # past the meter's wrapper

    names = [KEY_SECRET, vicare.client_id_secret_name()]
    for module in (myuplink, onecta):
        names += [module.client_id_secret_name(), module.client_secret_secret_name()]
    active = 0
    for name in names:
        try:
            latest = int(get(name).version)
        except SecretNotFound:
            continue
        for number in range(1, latest + 1):
            try:
                get(name, str(number))
            except SecretNotFound:
                continue
            active += 1
    return active


# -- from counts to usages --------------------------------------------------------------------


def usages_from(
    run: Run,
    fleet: int,
    *,
    io_scale: float = 1.0,
    serial_waits: bool = False,
    cold_starts: str = "instances",
    concurrencies: Mapping[str, int] | None = None,
) -> tuple[list[Usage], dict[str, Any]]:
    """The month's usages (see the module docstring) and the per device-day details.

    For the what-ifs: ``io_scale`` multiplies the assumed remote latencies; ``serial_waits``
    bills every remote call's wait one after another (as if no request used threads);
    ``cold_starts`` is ``instances`` (the modelled instance starts read the secrets) or
    ``every_request`` (every request of a credential-reading entry point reads them: no
    per-instance cache);
    ``concurrencies`` replaces terraform's maximum concurrency of the functions it names."""
    device_days = run.homes * run.days
    month = DAYS_PER_MONTH / run.days  # measured totals over the run -> a month

    def split(key: str) -> tuple[float, float]:
        device = run.meter.counts[("device", key)] * month / run.homes
        project = run.meter.counts[("project", key)] * month
        return device, project

    def store_split(operation: str) -> tuple[float, float]:
        device = project = 0.0
        for (phase, entry, _, collection, op), n in run.tally.paths.items():
            if op != operation:
                continue
            if phase in PROJECT_SCOPED:
                project += n * month
            elif (entry, collection) in PER_PAGE_DOCUMENTS:
                scaling = ENTRY_SCALING[(phase, entry)]
                device += requests_per_device(n, run.homes, scaling, fleet) * month
            else:
                device += n * month / run.homes
        return device, project

    reads, writes_all, deletes = (store_split(op) for op in ("read", "write", "delete"))
    writes = (writes_all[0] - deletes[0], writes_all[1] - deletes[1])
    stored_gib = (run.stored_bytes + run.index_bytes) / GIB / run.homes
    pubsub_tib = tuple(x / TIB for x in split("pubsub_bytes"))
    bq_billed = tuple(x / GIB for x in split("bigquery_billed_bytes"))
    bq_stored = tuple(x / GIB for x in split("bigquery_bytes"))
    log_gib = tuple(x / GIB for x in split("log_bytes"))
    ok, errors = split("spans_ok"), split("spans_error")
    spans = tuple(TRACE_SAMPLE_RATE * a + b for a, b in zip(ok, errors, strict=True))
    added = split("secret_versions_added")
    destroyed = split("secret_versions_destroyed")
    versions = (
        max(0.0, added[0] - destroyed[0]),
        max(0.0, run.project_secret_versions + added[1] - destroyed[1]),
    )
    reads_per_start = len(run.meter.secrets_read)
    starts, slots = credential_instance_starts_per_month()
    secret_accesses = split("secret_accesses")
    if cold_starts == "instances":
        secret_accesses = (secret_accesses[0], secret_accesses[1] + starts * reads_per_start)
    else:
        credential_requests = sum(
            run.meter.invocations[k].count
            for k in run.meter.invocations
            if k[1] in CREDENTIAL_ENTRY_POINTS
        )
        scale = month / run.homes
        secret_accesses = (
            secret_accesses[0] + credential_requests * scale * reads_per_start,
            secret_accesses[1],
        )

    functions: dict[str, dict[str, Invocations]] = {}
    for (function, entry), measured in run.meter.invocations.items():
        functions.setdefault(function, {})[entry] = measured
    requests = [0.0, 0.0]
    vcpu = [0.0, 0.0]
    gib_s = [0.0, 0.0]
    per_function: dict[str, Any] = {}
    sizes = {
        name: FunctionResources(size.memory_gib, size.vcpu, concurrency, f"{size.source}, what-if")
        if (concurrency := (concurrencies or {}).get(name)) is not None
        else size
        for name, size in function_resources().items()
    }
    caps = function_max_instances()
    period_s = run.days * 86_400.0
    for function, entries in sorted(functions.items()):
        scaled = {
            e: Invocations(
                m.count,
                m.compute_s,
                (m.serial_io_s if serial_waits else m.io_s) * io_scale,
                m.serial_io_s * io_scale,
            )
            for e, m in entries.items()
        }
        device, project = function_usage(
            function, scaled, run.homes, fleet, sizes, period_s=period_s, max_instances=caps
        )
        loads = entry_loads(
            function, scaled, run.homes, fleet, sizes, period_s=period_s, max_instances=caps
        )
        for i, u in enumerate((device, project)):
            requests[i] += u.requests * month
            vcpu[i] += u.vcpu_s * month
            gib_s[i] += u.gib_s * month
        per_function[function] = {
            "resources": {
                e: {
                    "served_by": (served := serving_function(e)),
                    "memory_gib": sizes[served].memory_gib,
                    "vcpu": sizes[served].vcpu,
                    "concurrency": sizes[served].concurrency,
                    "max_instances": caps.get(served, DEFAULT_MAX_INSTANCES),
                    "requests_in_flight_fleet": _round(loads[e].in_flight),
                    "function_requests_in_flight_fleet": _round(loads[e].function_in_flight),
                    "effective_concurrency": _round(loads[e].concurrency),
                    "source": sizes[served].source,
                }
                for e in sorted(entries)
            },
            "invocations_per_device_day": {
                e: round(m.count / device_days, 3) for e, m in sorted(entries.items())
            },
            "handler_cpu_ms_per_device_day": round(
                1000 * sum(m.compute_s for m in entries.values()) / device_days, 2
            ),
            "assumed_io_ms_per_device_day": round(
                1000 * sum(m.io_s for m in entries.values()) / device_days, 2
            ),
            "assumed_io_all_calls_ms_per_device_day": round(
                1000 * sum(m.serial_io_s for m in entries.values()) / device_days, 2
            ),
            "requests_per_device_month": _round(device.requests * month),
            "vcpu_s_per_device_month": _round(device.vcpu_s * month),
            "gib_s_per_device_month": _round(device.gib_s * month),
            "project_requests_per_month": _round(project.requests * month),
        }
    usages = [
        Usage("firestore_reads", *reads),
        Usage("firestore_writes", *writes),
        Usage("firestore_deletes", *deletes),
        Usage("firestore_storage", stored_gib),
        Usage("pubsub_throughput", *pubsub_tib),
        Usage("tasks_operations", *split("tasks_operations")),
        Usage("functions_requests", *requests),
        Usage("functions_vcpu", *vcpu),
        Usage("functions_memory", *gib_s),
        Usage("bigquery_streaming", *bq_billed),
        Usage("bigquery_storage", *bq_stored),
        Usage("secret_access", *secret_accesses),
        Usage("secret_versions", *versions),
        Usage("logging", *log_gib),
        Usage("trace", *spans),
        Usage("scheduler", 0.0, SCHEDULER_JOBS),
    ]

    def per_day(key: str) -> float:
        return round(run.meter.counts[("device", key)] / device_days, 3)

    details = {
        "per_device_day": {
            "firestore_reads": round(reads[0] / DAYS_PER_MONTH, 2),
            "firestore_writes": round(writes[0] / DAYS_PER_MONTH, 2),
            "firestore_deletes": round(deletes[0] / DAYS_PER_MONTH, 2),
            **{
                key: per_day(key)
                for key in (
                    "pubsub_publishes",
                    "pubsub_deliveries",
                    "tasks_operations",
                    "bigquery_rows",
                    "bigquery_bytes",
                    "secret_accesses",
                    "secret_versions_added",
                    "manufacturer_calls",
                    "log_lines",
                    "log_bytes",
                    "metric_record_lines",
                    "metric_record_bytes",
                    "spans_ok",
                    "spans_error",
                )
            },
        },
        "project_per_day": {
            key: round(n / run.days, 2)
            for (scope, key), n in sorted(run.meter.counts.items())
            if scope == "project"
        },
        "firestore_per_device_day_by_function": {
            operation: {
                phase: round(n / device_days, 2)
                for phase, n in sorted(run.tally.by(0, operation).items())
                if phase not in ("setup", "observer", "settle")
            }
            for operation in ("read", "write", "delete")
        },
        "firestore_per_device_day_by_kind": {
            operation: {
                kind: round(n / device_days, 2)
                for kind, n in sorted(_active_by_kind(run.tally, operation).items())
            }
            for operation in ("read", "write", "delete")
        },
        "firestore_stored": {
            "documents_per_device": round(run.documents / run.homes, 1),
            "document_bytes_per_device": round(run.stored_bytes / run.homes),
            "index_bytes_per_device_estimate": round(run.index_bytes / run.homes),
            "index_exemptions": sorted(f"{group}.{field}" for group, field in run.index_exemptions),
            "note": "at the end of the week, billed as if stored all month",
        },
        "credentials": {
            "documents_per_device_day": {
                operation: round(n / device_days, 3)
                for operation, n in sorted(run.tally.credentials.items())
            },
            "secret_reads_per_instance_start": sorted(
                f"{n}/{v}" for n, v in run.meter.secrets_read
            ),
            "instance_starts_per_month": round(starts),
            "max_instances": slots,
            "assumed_instance_lifetime_s": INSTANCE_LIFETIME_S,
            "active_secret_versions_project": run.project_secret_versions,
        },
        "functions": per_function,
        "assumed_latency_s": LATENCY_S,
    }
    return usages, details


def _active_by_kind(tally: Tally, operation: str) -> dict[str, int]:
    out: Counter[str] = Counter()
    for (phase, kind, op), n in tally.counts.items():
        if op == operation and phase not in ("setup", "observer", "settle"):
            out[kind] += n
    return dict(out)


def _per_device_day(
    run: Run, fleet: int, function: str, n: float, per_page: tuple[str, str] | None = None
) -> float:
    """A count over the run per device and day; the project's own work shared by the fleet;
    ``per_page`` (entry, collection) documents counted per page of the fleet."""
    if function in PROJECT_SCOPED:
        return n / run.days / fleet
    if per_page in PER_PAGE_DOCUMENTS:
        scaling = ENTRY_SCALING[(function, per_page[0])]
        return requests_per_device(n, run.homes, scaling, fleet) / run.days
    return n / (run.homes * run.days)


def _ranked(rows: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    rows.sort(key=lambda row: -row["usd_per_device_month"])
    return rows[:top]


def breakdown(run: Run, fleet: int = FLEET_DEVICES, top: int = 30) -> dict[str, Any]:
    """What each code path caused (``--by-caller``), per device-day, and its price per
    device-month at the list prices (the marginal price, beyond the free tiers), the most
    expensive first: document operations by entry point, code path (the innermost frame of
    hpsteer's own code) and collection; log lines by entry point and source (logger and message
    template, or the metric a metric record counts); remote waits by entry point and kind; Pub/Sub
    messages by entry point and topic."""
    month = DAYS_PER_MONTH
    reads, writes = PRICES["firestore_reads"].usd_per_unit, PRICES["firestore_writes"].usd_per_unit
    deletes, log_gib = PRICES["firestore_deletes"].usd_per_unit, PRICES["logging"].usd_per_unit
    operations: defaultdict[tuple[str, str, str], defaultdict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for (function, entry, caller, collection, op), n in run.tally.paths.items():
        operations[(entry, caller, collection)][op] += _per_device_day(
            run, fleet, function, n, (entry, collection)
        )
    firestore = []
    for (entry, caller, collection), ops in operations.items():
        written = ops["write"] - ops["delete"]
        usd = month * (ops["read"] * reads + written * writes + ops["delete"] * deletes)
        firestore.append(
            {
                "entry": entry,
                "code_path": caller,
                "collection": collection,
                "reads_per_device_day": round(ops["read"], 3),
                "writes_per_device_day": round(ops["write"], 3),
                "usd_per_device_month": _round(usd),
            }
        )
    logs = []
    for key, size in run.meter.log_bytes.items():
        function, entry, source = key
        per_day = _per_device_day(run, fleet, function, size)
        logs.append(
            {
                "entry": entry,
                "source": source,
                "lines_per_device_day": round(
                    _per_device_day(run, fleet, function, run.meter.log_lines[key]), 3
                ),
                "bytes_per_device_day": round(per_day, 1),
                "billed": not source.startswith("metric record"),
                "usd_per_device_month": _round(per_day * month / GIB * log_gib),
            }
        )
    waits: defaultdict[str, dict[str, float]] = defaultdict(dict)
    for (function, entry, kind), seconds in run.meter.io_by_entry.items():
        waits[entry][kind] = round(1000 * _per_device_day(run, fleet, function, seconds), 1)
    time_rows = {
        entry: {
            "requests_per_device_day": round(
                _per_device_day(run, fleet, function, measured.count), 4
            ),
            "cpu_ms_per_device_day": round(
                1000 * _per_device_day(run, fleet, function, measured.compute_s), 2
            ),
            "assumed_wait_ms_per_device_day": dict(sorted(waits[entry].items())),
            "critical_path_wait_ms_per_device_day": round(
                1000 * _per_device_day(run, fleet, function, measured.io_s), 1
            ),
        }
        for (function, entry), measured in sorted(run.meter.invocations.items())
    }
    bus = [
        {
            "entry": entry or function,
            "topic": topic,
            "publishes_per_device_day": round(_per_device_day(run, fleet, function, n), 3),
        }
        for (function, entry, topic), n in sorted(run.meter.publishes.items())
    ]
    return {
        "note": (
            "per device-day (project-wide work shared by the fleet); usd_per_device_month at list "
            "price without the free tiers; metric records (billed false) are excluded from "
            "storage by terraform/monitoring.tf"
        ),
        "firestore": _ranked(firestore, top),
        "logging": _ranked(logs, top),
        "function_time": time_rows,
        "pubsub": sorted(bus, key=lambda row: -row["publishes_per_device_day"]),
    }


WHAT_IFS: dict[str, dict[str, Any]] = {
    "no_remote_latency": {"io_scale": 0.0},
    "remote_calls_one_after_another": {"serial_waits": True},
    "every_credential_request_a_cold_start": {"cold_starts": "every_request"},
}
"""Totals under other assumptions, to show what the dominant items hang on."""


def figures(run: Run, fleet: int = FLEET_DEVICES) -> dict[str, Any]:
    usages, details = usages_from(run, fleet)
    items = itemise(usages, PRICES, fleet)
    total = total_usd(items)
    what_ifs = {
        name: _round(total_usd(itemise(usages_from(run, fleet, **kw)[0], PRICES, fleet)))
        for name, kw in WHAT_IFS.items()
    }
    ranked = sorted(items, key=lambda i: i.usd_per_device_month, reverse=True)
    return {
        "benchmark": "cloud_cost",
        "usd_per_device_month": _round(total),
        "goal_usd": GOAL_USD,
        "met": total <= GOAL_USD,
        "fleet_devices": fleet,
        "reconcile_interval_minutes": 10,
        "commands_per_device_day": round(run.commands / (run.homes * run.days), 2),
        "items": [item.as_json() for item in items],
        "dominant": [
            f"{i.service}: {i.what} ({100 * i.usd_per_device_month / total:.0f} %)"
            for i in ranked[:3]
            if total > 0
        ],
        "what_if_usd_per_device_month": what_ifs,
        "prices": {
            key: {
                "service": p.service,
                "what": p.what,
                "usd_per_unit": p.usd_per_unit,
                "unit": p.unit,
                "free_units_per_month": p.free_units_per_month,
                "source": p.source,
                "confirmed": p.confirmed,
                **({"note": p.note} if p.note else {}),
            }
            for key, p in PRICES.items()
        }
        | {
            "region": "europe-west1 (Tier 1); BigQuery dataset in the EU multi-region",
            "source": "cloud.google.com pricing pages (per price above)",
            "read_on": READ_HOW,
        },
        "details": details,
        "by_code_path": breakdown(run, fleet),
        "run": {
            "homes": run.homes,
            "days": run.days,
            "area": run.area,
            "start": "2023-01-09",
            "faults": "realistic",
            "seed": run.seed,
            "wall_s": round(run.wall_s, 1),
        },
    }


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _print_table(result: Mapping[str, Any]) -> None:
    run = result["run"]
    print(
        f"cloud cost per device-month, {result['fleet_devices']:,} devices, from "
        f"{run['homes']} homes x {run['days']} days ({run['area']}, {run['faults']} faults), "
        f"{result['commands_per_device_day']} commands per device-day"
    )
    print(f"  {'service':20} {'what':58} {'qty/device-month':>16} {'USD/device-month':>16}")
    for item in sorted(result["items"], key=lambda i: -i["usd_per_device_month"]):
        print(
            f"  {item['service']:20} {item['what'][:58]:58} "
            f"{item['quantity_per_device_month']:>12.4g} {item['unit'][:3]:3} "
            f"{item['usd_per_device_month']:>16.6f}"
        )
    verdict = "met" if result["met"] else "missed"
    print(
        f"  total ${result['usd_per_device_month']:.5f} per device-month "
        f"(goal ${result['goal_usd']}: {verdict}); dominant: {'; '.join(result['dominant'])}"
    )
    for name, usd in result["what_if_usd_per_device_month"].items():
        print(f"  what if {name.replace('_', ' ')}: ${usd:.5f}")
    print(f"  prices: {result['prices']['region']}, {result['prices']['read_on']}")


def _print_breakdown(by: Mapping[str, Any], top: int = 15) -> None:
    print(f"  by code path ({by['note']}):")
    heading = "Firestore: entry, code path, collection"
    print(f"    {heading:86} {'reads':>7} {'writes':>7} {'USD':>9}")
    for row in by["firestore"][:top]:
        where = f"{row['entry']}: {row['code_path']} {row['collection']}"
        print(
            f"    {where[:86]:86} {row['reads_per_device_day']:>7.2f} "
            f"{row['writes_per_device_day']:>7.2f} {row['usd_per_device_month']:>9.6f}"
        )
    print(f"    {'log lines: entry, source':86} {'lines':>7} {'bytes':>7} {'USD':>9}")
    for row in by["logging"][:top]:
        where = f"{row['entry']}: {row['source']}" + ("" if row["billed"] else " (not billed)")
        print(
            f"    {where[:86]:86} {row['lines_per_device_day']:>7.1f} "
            f"{row['bytes_per_device_day']:>7.0f} {row['usd_per_device_month']:>9.6f}"
        )
    print(
        "    function time per device-day: requests, CPU ms, assumed waits ms by kind "
        "(every call) and on the critical path (billed)"
    )
    for entry, row in by["function_time"].items():
        waits = ", ".join(f"{k} {v:.0f}" for k, v in row["assumed_wait_ms_per_device_day"].items())
        print(
            f"    {entry:18} {row['requests_per_device_day']:>9.3f} "
            f"{row['cpu_ms_per_device_day']:>9.1f}  {waits}; "
            f"critical path {row['critical_path_wait_ms_per_device_day']:.0f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--homes", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fleet", type=int, default=FLEET_DEVICES)
    parser.add_argument(
        "--by-caller",
        action="store_true",
        help="print what each code path costs (the JSON always has it: by_code_path)",
    )
    args = parser.parse_args(argv)
    result = figures(measure_run(args.homes, args.days, args.seed), args.fleet)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
        if args.by_caller:
            _print_breakdown(result["by_code_path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
