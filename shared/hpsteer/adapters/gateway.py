"""The one door to the manufacturers' clouds: adapter, circuit breaker and rate budget together.

Every call a service makes to a manufacturer goes through a :class:`ManufacturerGateway`, which

1. asks the manufacturer's :class:`~hpsteer.adapters.breaker.CircuitBreaker` (open: raises
   :class:`~hpsteer.errors.CircuitOpen` with ``retry_at``),
2. takes one unit of the account's :class:`~hpsteer.adapters.budget.RateBudget` of the call's
   kind, command or read (spent: :class:`~hpsteer.errors.OemRateLimited` with ``retry_at``; the
   breaker's probe slot is freed); a poll on reconciliation's schedule (:meth:`poll_state`)
   takes its units from the device's booking, and a command's verification read from the
   booking its send made (:meth:`admit_command`, :meth:`read_state` with ``booked``),
3. calls the adapter and tells the breaker how it went; a limit the manufacturer itself reports
   (429 with a reset time) blocks the account's budget until then, so no instance calls again
   before.

Commands take three steps: :meth:`prepare` (translate and validate; a read, since translating
may read the device's current setting), :meth:`admit_command`, then :meth:`send`, because the
dispatcher records the attempt between the last two (a refusal must not leave an attempt in the
history); :meth:`admit_command` can book the read of the command's verification in the same
budget write, and the dispatcher carries the booking to the command with that record. A
permanent error of the adapter (a rejected command) does not count against the breaker;
:class:`~hpsteer.errors.DeviceOffline` neither (the breaker's rule). A state read that meets a
5xx or a timeout is tried again at once, up to :data:`READ_ATTEMPTS` times (a command never is:
its retries belong to the command path, which records each attempt). One gateway per
function instance: breakers and budgets are cached here; their shared state is in the store.
What an instance keeps in memory to spare the store, and why it stays right when many instances
and several threads share it: the breaker's state (:mod:`~hpsteer.adapters.breaker`), the
households' baselines (:mod:`~hpsteer.adapters.baseline`, invalidated across instances by
:meth:`ManufacturerGateway.forget_baseline`'s epoch) and each account's access token
(:class:`~hpsteer.adapters.oauth.AccessTokenKeeper`). The rate budget keeps nothing in memory:
a call is one transaction on the account's document, except a poll on a schedule and a booked
verification read, which a booking in the store pays (:mod:`~hpsteer.adapters.budget`,
"Bookings": its copy travels on the document the caller has read, the device's or the
command's, so such a call costs the store nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from hpsteer.adapters.breaker import BreakerConfig, CircuitBreaker
from hpsteer.adapters.budget import BookedCall, Booking, BudgetKind, RateBudget, Schedule
from hpsteer.adapters.protocol import (
    AdapterContext,
    CommandResult,
    DeviceRef,
    DeviceState,
    ManufacturerAdapter,
    ValidationResult,
)
from hpsteer.adapters.registry import AdapterRegistry, default_registry
from hpsteer.domain.actions import GenericAction
from hpsteer.errors import DocumentNotFound, InvalidInput, OemRateLimited, OemUnavailable
from hpsteer.observability.metrics import OEM_API_ERRORS_TOTAL, OEM_API_LATENCY_SECONDS, metrics
from hpsteer.observability.tracing import span

__all__ = [
    "BASELINE_FORGOTTEN_FIELD",
    "READ_ATTEMPTS",
    "VERIFY_BOOKING_SPAN",
    "ManufacturerGateway",
    "device_ref",
]

T = TypeVar("T")

BASELINE_FORGOTTEN_FIELD = "baseline_forgotten_at"
"""The field of ``devices/{id}`` that :meth:`ManufacturerGateway.forget_baseline` sets to the
instant it forgot the household's values: the device's baseline epoch."""

READ_ATTEMPTS = 3
"""How often a state read is tried when the manufacturer answers 5xx or times out. Reads change
nothing, so trying again at once is safe. Each try is paid from the budget (none left: no more
tries); the breaker sees the read's outcome once, so scattered errors that a retry absorbs do not
open it, while a manufacturer that is down fails every try and opens it as fast as before."""


VERIFY_BOOKING_SPAN: Final = timedelta(minutes=5)
"""How long after its booked instant a command's verification read may still be paid by the
booking (:meth:`ManufacturerGateway.admit_command`). The verification task is due a little after
that instant (its delay counts from the acknowledgement, after the send's calls) and Cloud Tasks
delivers it within seconds, so five minutes leave room for a slow manufacturer and a queue
running behind; a later delivery counts its read on its own. A longer span would hold the
booked units longer in the short windows (an instant counts over its span plus the window: 15
minutes of ViCare's 10-minute window, 6 minutes of myUplink's and Onecta's minute)."""


def device_ref(device_id: str, device: Mapping[str, Any]) -> DeviceRef:
    """The manufacturer's view of a ``devices/{id}`` document, with its baseline epoch (when
    its baselines were last forgotten; ``""`` when never)."""
    forgotten = device.get(BASELINE_FORGOTTEN_FIELD)
    try:
        return DeviceRef(
            manufacturer=str(device["manufacturer"]),
            external_id=str(device["external_id"]),
            account_id=str(device["account_id"]),
            device_id=device_id,
            baseline_epoch=forgotten.isoformat() if isinstance(forgotten, datetime) else "",
        )
    except KeyError as err:
        raise InvalidInput(f"device {device_id} has no {err.args[0]}") from None


class ManufacturerGateway:
    """Adapters, breakers and budgets of one function instance (see the module docstring)."""

    def __init__(
        self,
        context: AdapterContext,
        *,
        registry: AdapterRegistry | None = None,
        breaker_config: BreakerConfig | None = None,
    ) -> None:
        if context.store is None:
            raise InvalidInput("the gateway needs a store for breakers and budgets")
        self.context = context
        self._store = context.store
        self._registry = registry or default_registry()
        self._breaker_config = breaker_config
        self._breakers: dict[str, CircuitBreaker] = {}
        self._budgets: dict[tuple[str, str], RateBudget] = {}
        self._lock = threading.Lock()

    def adapter(self, manufacturer: str) -> ManufacturerAdapter:
        return self._registry.build(manufacturer, self.context)

    def breaker(self, manufacturer: str) -> CircuitBreaker:
        with self._lock:
            found = self._breakers.get(manufacturer)
            if found is None:
                found = self._breakers[manufacturer] = CircuitBreaker(
                    self._store, manufacturer, self.context.clock, self._breaker_config
                )
            return found

    def budget(self, manufacturer: str, account_id: str) -> RateBudget:
        key = (manufacturer, account_id)
        with self._lock:
            found = self._budgets.get(key)
        if found is not None:
            return found
        limits = self.adapter(manufacturer).rate_limits
        with self._lock:
            return self._budgets.setdefault(
                key, RateBudget(self._store, manufacturer, account_id, limits, self.context.clock)
            )

    def _admit(self, device: DeviceRef, pay: Callable[[RateBudget], T]) -> T:
        """Breaker first, then ``pay`` from the account's budget; a refusal frees the breaker's
        probe slot."""
        breaker = self.breaker(device.manufacturer)
        breaker.before_call()
        try:
            return pay(self.budget(device.manufacturer, device.account_id))
        except BaseException:
            breaker.cancel()
            raise

    def _state_read_calls(self, device: DeviceRef) -> int:
        return self.adapter(device.manufacturer).rate_limits.calls_per_state_read

    def admit_command(
        self,
        device: DeviceRef,
        *,
        with_read: bool = False,
        verify_at: datetime | None = None,
        holder: str = "",
    ) -> Booking | None:
        """Reserve a command call (and, ``with_read``, the read its translation makes, in the
        same budget write): raises CircuitOpen or OemRateLimited (both with retry_at). A
        command's own reads count against the command share: polling never starves them.

        With ``verify_at`` and ``holder`` (the document that will carry the booking: the
        command's), the same write also books the state read of the command's verification at
        ``verify_at`` (:meth:`~hpsteer.adapters.budget.RateBudget.acquire_and_book`: one
        instant, :data:`VERIFY_BOOKING_SPAN`, the command share), its blocks marked on the
        device's document, and returns the booking for the caller to carry to ``holder``;
        ``None`` when it did not fit (the verification then counts its read on its own)."""
        counts: dict[BudgetKind, int] = {"command": 2 if with_read else 1}
        if verify_at is None or not holder or not device.device_id:
            self._admit(device, lambda budget: budget.acquire_all(counts))
            return None
        calls = self._state_read_calls(device)
        marked_on = f"devices/{device.device_id}"
        return self._admit(
            device,
            lambda budget: budget.acquire_and_book(
                counts, "command", calls, verify_at, VERIFY_BOOKING_SPAN, holder, marked_on
            ),
        )

    def cancel(self, device: DeviceRef) -> None:
        """An admitted call will not happen after all (frees a half-open probe slot)."""
        self.breaker(device.manufacturer).cancel()

    def _guarded(self, device: DeviceRef, call: Any, endpoint: str) -> Any:
        breaker = self.breaker(device.manufacturer)
        labels = {"oem": device.manufacturer, "endpoint": endpoint}
        started = time.perf_counter()
        try:
            result = call()
        except Exception as err:
            metrics.observe(OEM_API_LATENCY_SECONDS, time.perf_counter() - started, **labels)
            metrics.inc(OEM_API_ERRORS_TOTAL, error_type=type(err).__name__, **labels)
            self._failed(device, breaker, err)
            raise
        metrics.observe(OEM_API_LATENCY_SECONDS, time.perf_counter() - started, **labels)
        breaker.record_success()
        return result

    def _failed(self, device: DeviceRef, breaker: CircuitBreaker, err: Exception) -> None:
        breaker.record_failure(err)
        if isinstance(err, OemRateLimited) and err.retry_at is not None:
            self.budget(device.manufacturer, device.account_id).block_until(
                err.retry_at, reason=f"{device.manufacturer} answered 429"
            )

    def prepare(
        self, device: DeviceRef, action: GenericAction, *, admitted: bool = False
    ) -> tuple[dict[str, Any], ValidationResult]:
        """Translate and validate ``action`` for the device. Translating may read the device
        (its current setting is the baseline of an offset), so it takes a unit of the command
        share, unless ``admitted`` (:meth:`admit_command` ``with_read`` took it already)."""
        if not admitted:
            self._admit(device, lambda budget: budget.acquire_all({"command": 1}))
        adapter = self.adapter(device.manufacturer)

        def translate() -> tuple[dict[str, Any], ValidationResult]:
            payload = dict(adapter.translate_generic_command(action, device))
            return payload, adapter.validate_command(action, payload, device)

        prepared: tuple[dict[str, Any], ValidationResult] = self._guarded(
            device, translate, "translate"
        )
        return prepared

    def send(
        self, device: DeviceRef, action: GenericAction, payload: Mapping[str, Any]
    ) -> CommandResult:
        """Send an admitted command (call :meth:`admit_command` first)."""
        adapter = self.adapter(device.manufacturer)
        result: CommandResult = self._guarded(
            device, lambda: adapter.send_command(action, payload, device), "send_command"
        )
        return result

    def forget_baseline(self, device: DeviceRef) -> None:
        """The household's own setting is learnt again at the device's next command (no call to
        the manufacturer now, so no budget or breaker). The stored values are deleted first,
        then ``devices/{id}.baseline_forgotten_at`` is set to now (one write), so every
        instance's kept values are read again at its next call for the device
        (:mod:`hpsteer.adapters.baseline`). A device whose document is gone has none to move."""
        self.adapter(device.manufacturer).forget_baseline(device)
        if not device.device_id:
            return
        try:
            self._store.update(
                f"devices/{device.device_id}", {BASELINE_FORGOTTEN_FIELD: self.context.clock.now()}
            )
        except DocumentNotFound:
            return

    def read_state(
        self, device: DeviceRef, *, for_command: bool = False, booked: BookedCall | None = None
    ) -> DeviceState:
        """Admit a read (breaker, budget) and read the device's state. A read for a command (its
        verification, settling an unknown outcome) takes from the command share, a poll from
        the read share; either way as many units as the read makes API calls, in one
        transaction on the account's budget, unless ``booked`` pays for them (the booking
        :meth:`admit_command` made for a verification:
        :meth:`~hpsteer.adapters.budget.RateBudget.take_booked`, no store operation; refused
        while a block marked for it lasts). The caller promises to pay with a booking at most
        once; a retry of the read takes further units one by one."""
        kind: BudgetKind = "command" if for_command else "read"
        calls = self._state_read_calls(device)

        def pay(budget: RateBudget) -> None:
            if booked is None or not budget.take_booked(kind, calls, booked):
                budget.acquire_all({kind: calls})

        self._admit(device, pay)
        return self._read(device, kind, calls, for_command=for_command)

    def poll_state(self, device: DeviceRef, schedule: Schedule) -> DeviceState:
        """A poll on the caller's schedule (reconciliation's: the instant ``schedule.at``, one of
        a device's ticks): its units come from the read share through a booking
        (:meth:`~hpsteer.adapters.budget.RateBudget.take_scheduled`: none of the store when the
        device's booking covers the instant, else one transaction that books the schedule
        ahead). The caller promises to poll a device at most once per instant; a retry of the
        read takes further units one by one, as :meth:`read_state` does."""
        calls = self._state_read_calls(device)
        self._admit(device, lambda budget: budget.take_scheduled("read", calls, schedule))
        return self._read(device, "read", calls, for_command=False)

    def _read(
        self, device: DeviceRef, kind: BudgetKind, calls: int, *, for_command: bool
    ) -> DeviceState:
        """Read the state of a device whose first read is admitted; a retry takes more units."""
        adapter = self.adapter(device.manufacturer)
        budget = self.budget(device.manufacturer, device.account_id)

        def read() -> DeviceState:
            for attempt in range(1, READ_ATTEMPTS + 1):
                try:
                    return adapter.get_device_state(device)
                except OemRateLimited:
                    raise
                except OemUnavailable as failed:
                    if attempt == READ_ATTEMPTS:
                        raise
                    try:
                        budget.acquire_all({kind: calls})
                    except OemRateLimited:
                        raise failed from None
            raise AssertionError("unreachable")  # pragma: no cover

        attributes = {"oem": device.manufacturer, "for_command": for_command}
        with span("read_device_state", attributes):
            state: DeviceState = self._guarded(device, read, "read_state")
        return state
