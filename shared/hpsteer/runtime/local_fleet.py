"""The command path on one machine: local backends, a simulated fleet, tasks that reach handlers.

:class:`LocalFleet` wires what the cloud wires between Cloud Tasks and the dispatch function:

- the local backends on a :class:`~hpsteer.ports.clock.SimulatedClock`;
- a :class:`~hpsteer.sim.Fleet` of homes behind the manufacturers' emulated APIs, reached in
  process (:class:`~hpsteer.sim.SimTransport`), with the manufacturers' app credentials and the
  data key in the secrets port and each account's refresh token onboarded (sealed) into the
  store (:mod:`hpsteer.adapters.credentials`), and a
  :class:`~hpsteer.adapters.gateway.ManufacturerGateway` (real adapters, breakers, budgets) over
  it;
- a :class:`~hpsteer.backends.local.tasks.LocalTaskQueue` whose deliveries call
  :func:`~hpsteer.services.dispatch.handle_dispatch`,
  :func:`~hpsteer.services.dispatch.handle_verify` or
  :func:`~hpsteer.services.recheck.handle_recheck` directly, with the same headers Cloud Tasks
  sends (the URL decides which, as in the cloud);
- ``devices/{id}`` documents for the fleet's homes (:meth:`LocalFleet.register_devices`).

:meth:`LocalFleet.run_until` moves simulated time from one due task to the next and delivers
what is due. The whole fleet's physics is stepped in strides of :data:`STRIDE` (and at the end
of each run); between strides a request steps only the home it touches (the simulated clouds do
that), so a delivery costs its own home, not the fleet's. Tests, benchmarks and the simulator
use it; a ``checkpoint`` callable is passed to the handlers, for crash injection.

Reconciliation runs with ``reconcile_workers`` = 1 here, whatever the settings say: the fleet's
faults are drawn from one seeded generator in the order the calls arrive, so a page's devices
polled on several threads would draw them in a different order every run, and a run would no
longer be reproducible from its seed. (Production reconciles a page on several threads;
:func:`~hpsteer.services.reconcile.reconcile_page` takes ``workers`` for a test that wants them
here.) For the same reason an optimize shard plans its devices one after another here
(``optimize_io_workers`` = 1; :func:`~hpsteer.services.optimize.plan_shard` takes ``workers``),
and the command sweep settles its due plan releases in turn (``sweep_workers`` = 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from hpsteer.adapters.gateway import ManufacturerGateway
from hpsteer.adapters.protocol import AdapterContext
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult, LocalTaskQueue
from hpsteer.config import Settings
from hpsteer.domain.devices import ComfortBand, Device, Location
from hpsteer.domain.market import PriceArea
from hpsteer.observability.metrics import Metrics
from hpsteer.ports.bus import MessageBus
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.dispatch import Checkpoint, TaskDelivery, handle_dispatch, handle_verify
from hpsteer.services.outbox import sweep as sweep_commands
from hpsteer.services.recheck import handle_recheck
from hpsteer.sim import MANUFACTURERS, Fleet, SimApp, SimTransport
from hpsteer.sim.faults import FaultPlan
from hpsteer.thermal import ARCHETYPES

__all__ = ["SIM_BASE_URL", "LocalFleet"]

SIM_BASE_URL = "http://fleet.sim"
STRIDE = timedelta(minutes=15)
STOCKHOLM = (59.30, 18.16)
"""How often the whole fleet's physics is stepped while tasks are delivered."""


def _epoch(at: datetime, every: timedelta) -> datetime:
    """The last multiple of ``every`` since the Unix epoch at or before ``at``."""
    since = at - datetime(1970, 1, 1, tzinfo=at.tzinfo)
    return at - since % every


@functools.lru_cache(maxsize=64)
def _url_path(url: str) -> str:
    """The path of ``url`` (a queue has a handful of task URLs: parsed once each)."""
    return urlsplit(url).path


def _no_checkpoint(step: str) -> None:
    return None


@dataclass
class LocalFleet:
    clock: SimulatedClock
    deps: Dependencies
    fleet: Fleet
    gateway: ManufacturerGateway
    metrics: Metrics
    checkpoint: Checkpoint = _no_checkpoint
    copies: Callable[[], int] = lambda: 1
    """How many times Cloud Tasks delivers each request (at-least-once: a fault profile's
    duplicates); the queue sees the first delivery's answer."""
    _stepped_to: datetime = field(init=False)

    def __post_init__(self) -> None:
        self._stepped_to = self.clock.now()

    @property
    def manufacturer_apis_s(self) -> float:
        """Wall time the simulated manufacturers took to answer the adapters' calls (their side
        of each call, in-process here; in the cloud it is theirs): the transport's
        :attr:`~hpsteer.sim.transport.SimTransport.served_s`, 0 with another transport."""
        transport = self.gateway.context.transport
        return transport.served_s if isinstance(transport, SimTransport) else 0.0

    @classmethod
    def build(
        cls,
        *,
        start: datetime,
        homes: int = 3,
        seed: int = 0,
        faults: FaultPlan | None = None,
        settings: Settings | None = None,
        wrap_store: Callable[[DocumentStore], DocumentStore] | None = None,
        outdoor: Callable[[datetime], float] | None = None,
        price: Callable[[datetime], float] | None = None,
        gateway_class: type[ManufacturerGateway] = ManufacturerGateway,
        bus: MessageBus | None = None,
    ) -> LocalFleet:
        """``outdoor`` and ``price`` are the homes' surroundings (:class:`~hpsteer.sim.Fleet`);
        ``gateway_class`` lets a harness count what reaches the manufacturers."""
        clock = SimulatedClock(start)
        holder: list[LocalFleet] = []
        # Reproducible from the seed: a page's polls in document order (module docstring).
        settings = (settings or Settings(backend="local")).model_copy(
            update={"reconcile_workers": 1, "optimize_io_workers": 1, "sweep_workers": 1}
        )

        def deliver(request: DispatchedRequest) -> DispatchResult:
            return holder[0].deliver(request)

        deps = bootstrap.local(
            settings,
            clock=clock,
            dispatcher=deliver,
            secrets=MemorySecretStore(),
            wrap_store=wrap_store,
            bus=bus,
        )
        fleet = Fleet(
            clock,
            homes=homes,
            seed=seed,
            faults=faults or FaultPlan(seed=seed),
            outdoor=outdoor,
            price=price,
        )
        fleet.seed_credentials(deps.secrets, deps.store)
        context = AdapterContext(
            secrets=deps.secrets,
            clock=clock,
            base_urls=dict.fromkeys(MANUFACTURERS, SIM_BASE_URL),
            transport=SimTransport(SimApp(fleet)),
            store=deps.store,
        )
        gateway = gateway_class(context)
        deps.singleton("manufacturers", lambda: gateway)
        local = cls(clock, deps, fleet, gateway, Metrics())
        holder.append(local)
        return local

    @property
    def tasks(self) -> LocalTaskQueue:
        queue = self.deps.tasks
        assert isinstance(queue, LocalTaskQueue)
        return queue

    def deliver(self, request: DispatchedRequest) -> DispatchResult:
        """A task delivery (and its duplicates), as the dispatch function would receive it."""
        first = self._deliver_once(request)
        for _ in range(self.copies() - 1):
            self._deliver_once(request)
        return first

    def _deliver_once(self, request: DispatchedRequest) -> DispatchResult:
        delivery = TaskDelivery.from_headers(request.headers, request.body)
        path = _url_path(request.url)
        settings = self.deps.settings
        if path == _url_path(settings.recheck_url):
            reply = handle_recheck(delivery, self.deps, gateway=self.gateway, counters=self.metrics)
            return DispatchResult(reply.status, reply.headers())
        handler = handle_verify if path == _url_path(settings.verify_url) else handle_dispatch
        reply = handler(
            delivery,
            self.deps,
            gateway=self.gateway,
            checkpoint=self.checkpoint,
            counters=self.metrics,
        )
        return DispatchResult(reply.status, reply.headers())

    def register_devices(
        self, area: PriceArea = PriceArea.SE3, location: Location | None = None
    ) -> list[str]:
        """A ``devices/{id}`` document per home (its id is the home's), steering enabled, at
        ``location`` (default: Stockholm, SE3) under the location id of its home."""
        ids = []
        latitude, longitude = (location.latitude, location.longitude) if location else STOCKHOLM
        for home in self.fleet:
            device = Device(
                device_id=home.home_id,
                manufacturer=home.manufacturer,
                external_id=home.external_id,
                account_id=home.account_id,
                price_area=area,
                location=Location(location_id=home.home_id, latitude=latitude, longitude=longitude),
                comfort=ComfortBand(
                    min_indoor_temp_c=home.room_setpoint_c - 1.0,
                    setpoint_c=home.room_setpoint_c,
                    max_indoor_temp_c=home.room_setpoint_c + 2.0,
                ),
                thermal=ARCHETYPES[home.archetype].parameters,
                registered_at=self.clock.now(),
            )
            self.deps.store.set(f"devices/{home.home_id}", device.to_document())
            ids.append(home.home_id)
        return ids

    def run_until(
        self,
        until: datetime,
        *,
        max_deliveries: int = 1_000_000,
        sweep_every: timedelta | None = None,
    ) -> int:
        """Deliver every task due up to ``until``, moving the clock (and the homes) with them;
        return how many deliveries were made. The clock ends at ``until``.

        ``sweep_every``: the command sweep (:func:`~hpsteer.services.outbox.sweep`, Cloud
        Scheduler's ``command-sweep`` job) also runs at each multiple of it on the way (counted
        from the epoch, as a cron schedule), after the deliveries due by then: it releases the
        plans' changes as they come within ``release_ahead_minutes``."""
        delivered = 0
        if sweep_every is not None:
            tick = _epoch(self.clock.now(), sweep_every) + sweep_every
            while tick <= until and delivered < max_deliveries:
                delivered += self.run_until(tick, max_deliveries=max_deliveries - delivered)
                self.sweep()
                tick += sweep_every
        while delivered < max_deliveries:
            due = self.tasks.next_due_at()
            if due is None or due > until:
                break
            self.move_to(due)
            delivered += self.tasks.run_due()
        self.move_to(until)
        if until >= self.clock.now():
            self.fleet.advance(until)
            self._stepped_to = until
        return delivered

    def sweep(self) -> None:
        """One command sweep, as ``command-sweep-requests`` runs it."""
        sweep_commands(self.deps)

    def move_to(self, at: datetime) -> None:
        """The clock to ``at``, the whole fleet stepped at each stride on the way."""
        while self._stepped_to + STRIDE <= at:
            self._stepped_to += STRIDE
            if self._stepped_to > self.clock.now():
                self.fleet.advance(self._stepped_to)
        if at > self.clock.now():
            self.clock.advance_to(at)

    def run_for(self, duration: timedelta) -> int:
        return self.run_until(self.clock.now() + duration)
