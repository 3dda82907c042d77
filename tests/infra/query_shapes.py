"""The shapes of the Firestore queries the code makes, recorded while it runs, and their indexes.

Firestore refuses a query whose index does not exist (``FAILED_PRECONDITION: The query requires
an index``) while the emulator and the local store answer it anyway, so a missing index shows
only in production. Listing the queries by hand would go stale; instead:

- :class:`QueryRecorder` wraps the local document store's ``query`` and ``collection_group`` and
  notes each call's :class:`QueryShape` (scope, collection id, filtered fields and operators,
  explicit orders) and the :class:`CallSite` in ``shared/hpsteer`` that made it (from the stack);
- :func:`record_queries` runs a small simulation (5 homes, 1 day, the ``heavy`` fault profile,
  whose redeliveries and crashes make the twin-delivery and sweep queries certain rather than
  likely), then reads its result the way ``hpsteer simulate`` and ``hpsteer inspect`` do, and
  calls the query paths a day of steering does not reach (the baseline book's ``forget``;
  reconciliation's look-up of our last accepted command; what an operator does through the API);
- :func:`code_call_sites` finds every ``.query(`` / ``.collection_group(`` call in
  ``shared/hpsteer`` (outside the store backends and the port) by parsing the source, so a new
  query the run does not reach fails the coverage test rather than slipping through;
- :func:`index_needs` applies Firestore's index rules to a shape (see its docstring).
"""

from __future__ import annotations

import ast
import io
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.ports.store import Filter, Order, Page

__all__ = [
    "CallSite",
    "CompositeNeed",
    "GroupFieldNeed",
    "QueryRecorder",
    "QueryShape",
    "code_call_sites",
    "index_needs",
    "record_queries",
]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "hpsteer"
_NOT_CALLERS = (PACKAGE / "backends", PACKAGE / "ports" / "store.py")
"""Frames of the store itself and of ``every_page``: the caller is the frame outside them."""

Scope = Literal["COLLECTION", "COLLECTION_GROUP"]
IndexOrder = Literal["ASCENDING", "DESCENDING"]
EQUALITY_OPS = frozenset({"==", "in"})
INEQUALITY_OPS = frozenset({"<", "<=", ">", ">=", "!=", "not-in"})
ARRAY_OPS = frozenset({"array-contains"})


@dataclass(frozen=True, order=True)
class CallSite:
    """A line of ``shared/hpsteer`` that queries the store (path relative to the repository)."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, order=True)
class QueryShape:
    """What decides a query's index: not its values, limit or cursor."""

    scope: Scope
    collection_id: str
    filters: tuple[tuple[str, str], ...]
    """``(field, operator)`` in the order the code gave them."""
    orders: tuple[tuple[str, str], ...]
    """The explicit ``(field, "asc" | "desc")`` orders."""

    def effective_orders(self) -> tuple[tuple[str, IndexOrder], ...]:
        """As Firestore (and ``FirestoreDocumentStore``) orders: the explicit orders, then the
        fields under an inequality not ordered explicitly, by path, in the last direction."""
        explicit = [(name, _index_order(direction)) for name, direction in self.orders]
        last: IndexOrder = explicit[-1][1] if explicit else "ASCENDING"
        ordered = {name for name, _ in explicit}
        implicit = sorted({f for f, op in self.filters if op in INEQUALITY_OPS} - ordered)
        return (*explicit, *((name, last) for name in implicit))

    def __str__(self) -> str:
        where = " and ".join(f"{f} {op}" for f, op in self.filters) or "everything"
        order = ", ".join(f"{f} {d}" for f, d in self.orders)
        scope = "group" if self.scope == "COLLECTION_GROUP" else "collection"
        return f"{scope} {self.collection_id}: {where}" + (f" order by {order}" if order else "")


@dataclass(frozen=True, order=True)
class CompositeNeed:
    """A composite index: the equality fields (any order, ``ASCENDING``), then ``orders``."""

    scope: Scope
    collection_id: str
    equalities: tuple[str, ...]
    """Sorted; Firestore matches them in any order ahead of the ordered fields."""
    array_contains: tuple[str, ...]
    orders: tuple[tuple[str, IndexOrder], ...]


@dataclass(frozen=True, order=True)
class GroupFieldNeed:
    """A single-field index at collection-group scope (an order, or ``CONTAINS``)."""

    collection_id: str
    field: str
    mode: Literal["ASCENDING", "DESCENDING", "CONTAINS"]


IndexNeed = CompositeNeed | GroupFieldNeed


def _index_order(direction: str) -> IndexOrder:
    return "DESCENDING" if direction == "desc" else "ASCENDING"


def index_needs(shape: QueryShape) -> list[IndexNeed]:
    """The indexes Firestore needs for ``shape`` beyond the ones it builds by itself.

    - With no order (explicit, or implied by an inequality) the query is equalities only
      (``==``, ``in``, at most one ``array-contains``): at collection scope the automatic
      single-field indexes serve it, merged when there are several; at collection-group scope
      each field needs its single-field collection-group index.
    - One ordered field (from an order or a range) and no equality: a single-field index, which
      is automatic at collection scope (both directions) and must be declared at group scope.
    - Anything else, an order or range combined with equalities or with other orders: one
      composite index of the query's scope, equality fields first, then the orders.
    """
    equalities = sorted({f for f, op in shape.filters if op in EQUALITY_OPS})
    arrays = sorted({f for f, op in shape.filters if op in ARRAY_OPS})
    orders = shape.effective_orders()
    group = shape.scope == "COLLECTION_GROUP"
    if not orders:
        if not group:
            return []
        needs: list[IndexNeed] = [
            GroupFieldNeed(shape.collection_id, f, "ASCENDING") for f in equalities
        ]
        needs += [GroupFieldNeed(shape.collection_id, f, "CONTAINS") for f in arrays]
        return needs
    if not equalities and not arrays and len(orders) == 1:
        ((name, direction),) = orders
        return [GroupFieldNeed(shape.collection_id, name, direction)] if group else []
    return [
        CompositeNeed(shape.scope, shape.collection_id, tuple(equalities), tuple(arrays), orders)
    ]


# -- recording -------------------------------------------------------------------------------


def _caller(frame: FrameType | None) -> CallSite:
    """The first frame outside the store and ``every_page``: the line that made the query."""
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if not any(path == p or p in path.parents for p in _NOT_CALLERS):
            break
        frame = frame.f_back
    if frame is None:  # pragma: no cover - a query always has a caller
        raise RuntimeError("a query without a caller")
    path = Path(frame.f_code.co_filename)
    shown = path.relative_to(ROOT) if ROOT in path.parents else path
    return CallSite(str(shown), frame.f_lineno)


def _shape(
    scope: Scope, collection: str, filters: Sequence[Filter], order_by: Sequence[Order]
) -> QueryShape:
    return QueryShape(
        scope,
        collection.rsplit("/", 1)[-1],
        tuple((f.field, f.op) for f in filters),
        tuple((o.field, o.direction) for o in order_by),
    )


class QueryRecorder:
    """Every query shape seen while :meth:`recording`, with the call sites that made it."""

    def __init__(self) -> None:
        self.seen: dict[QueryShape, set[CallSite]] = defaultdict(set)

    @property
    def call_sites(self) -> set[CallSite]:
        return {site for sites in self.seen.values() for site in sites}

    def _wrap(self, scope: Scope, original: Callable[..., Page]) -> Callable[..., Page]:
        def recorded(
            store: LocalDocumentStore,
            collection: str,
            filters: Sequence[Filter] = (),
            order_by: Sequence[Order] = (),
            limit: int | None = None,
            cursor: str | None = None,
        ) -> Page:
            site = _caller(sys._getframe(1))
            self.seen[_shape(scope, collection, filters, order_by)].add(site)
            return original(store, collection, filters, order_by, limit, cursor)

        return recorded

    @contextmanager
    def recording(self) -> Iterator[QueryRecorder]:
        """Record every local store's queries (patched on the class: the simulation builds its
        store deep inside its wiring) until the block ends."""
        query, group = LocalDocumentStore.query, LocalDocumentStore.collection_group
        LocalDocumentStore.query = self._wrap("COLLECTION", query)  # type: ignore[method-assign]
        LocalDocumentStore.collection_group = self._wrap(  # type: ignore[method-assign]
            "COLLECTION_GROUP", group
        )
        try:
            yield self
        finally:
            LocalDocumentStore.query = query  # type: ignore[method-assign]
            LocalDocumentStore.collection_group = group  # type: ignore[method-assign]


def record_queries(out: Path) -> QueryRecorder:
    """Run the small simulation and the reads around it (see the module docstring) in ``out``."""
    from hpsteer.adapters.baseline import StoreBaselineBook
    from hpsteer.domain.market import PriceArea
    from hpsteer.runtime.inspect import inspect_command, inspect_device
    from hpsteer.runtime.simulation.engine import Simulation
    from hpsteer.runtime.simulation.options import SimulationOptions, check_options
    from hpsteer.runtime.simulation.results import build_record
    from hpsteer.services.command_log import last_accepted_mode

    recorder = QueryRecorder()
    options = SimulationOptions(
        area=PriceArea.SE3,
        start=date(2023, 1, 9),
        days=1,
        devices=5,
        seed=1,
        faults="heavy",
        out=out,
        planning_processes=1,
    )
    with recorder.recording():
        simulation = Simulation.build(options, check_options(options))
        simulation.run(traces=out / "traces.jsonl")
        build_record(simulation)  # the audit, the alerts, every command's history
    store = simulation.local.deps.store
    commands = store.collection_group("commands", limit=1).documents
    if not commands:  # pragma: no cover - a steered day always commands
        raise AssertionError("the simulation made no command: nothing to inspect")
    device_id, command_id = commands[0].path.split("/")[1], commands[0].id
    quiet: dict[str, Any] = {"out": io.StringIO(), "err": io.StringIO()}
    with recorder.recording():
        inspect_device(store, device_id, **quiet)
        inspect_command(store, command_id, device_id=None, **quiet)
        # A household restoring its own settings makes an adapter forget the baselines it learnt
        # for the device; one simulated day does not get there.
        book = StoreBaselineBook(store, "viessmann", simulation.local.clock)
        book.forget(f"{device_id}|")
        # Reconciliation looks up our last accepted command only for a min or max sighting no
        # current plan explains; a day may not show one.
        last_accepted_mode(store, device_id)
        _operate(simulation.local.deps, device_id)
    return recorder


def _operate(deps: Any, device_id: str) -> None:
    """What an operator does through the API (hpsteer.services.operator), which no simulated
    day does: list and filter devices and alerts, read a device's status, register a device
    (its duplicate check), switch a device's steering off (its hand-back supersedes)."""
    from hpsteer.domain.market import PriceArea
    from hpsteer.domain.operator_requests import (
        AlertListQuery,
        DeviceListQuery,
        DeviceRegistration,
    )
    from hpsteer.domain.roles import Role
    from hpsteer.services.operator import alerts, devices, status
    from hpsteer.services.operator.audit import Actor

    actor = Actor("query-shapes@hpsteer.local", Role.ADMIN)
    listed = DeviceListQuery(
        price_area=PriceArea.SE3, manufacturer="viessmann", steering_enabled=True
    )
    devices.list_devices(deps, listed)
    alerts.list_alerts(deps, AlertListQuery(device_id=device_id, kind="command_failed"))
    status.device_status(deps, device_id)
    stored = devices.get_device(deps, device_id)
    registration = DeviceRegistration.model_validate(
        {
            "manufacturer": stored.manufacturer,
            "external_id": f"{stored.external_id}-second",
            "account_id": stored.account_id,
            "price_area": stored.price_area,
            "location": {"latitude": 59.3, "longitude": 18.1},
            "archetype": "old_radiators",
            "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
        }
    )
    devices.register_device(deps, actor, registration)
    devices.set_steering(deps, actor, device_id, False)


# -- the code's call sites -------------------------------------------------------------------


def _is_store_query(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in ("query", "collection_group"):
        return False
    receiver = ast.unparse(func.value).lower()
    return "analytics" not in receiver and "client" not in receiver  # BigQuery's query(sql)


def code_call_sites() -> set[CallSite]:
    """Every document-store query call in ``shared/hpsteer`` outside the backends and the port."""
    sites: set[CallSite] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path == p or p in path.parents for p in _NOT_CALLERS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        shown = str(path.relative_to(ROOT))
        sites |= {
            CallSite(shown, node.lineno)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _is_store_query(node)
        }
    return sites
