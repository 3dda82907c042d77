"""A circuit breaker per manufacturer whose state every function instance shares.

States are the architecture's, thresholds are :class:`BreakerConfig`'s (closed → open after
``failure_threshold`` consecutive failures or a failure rate over a sliding window; open →
half-open after ``open_timeout``; half-open → closed after ``success_threshold`` successful
probes, → open on a failed probe). ``circuit_breaker_state`` (0 closed, 1 half-open, 2 open)
is published per manufacturer in :mod:`hpsteer.observability.metrics`.

Why hand-written: dispatch runs as many stateless Cloud Function instances, and all of them must
stop calling a manufacturer once its cloud is failing. Libraries such as pybreaker or
circuitbreaker keep their state in the process (or in Redis, which we do not run); we keep it in
the document store, at ``manufacturers/{manufacturer}``, field ``breaker`` (state, reason,
opened_at, half_open_at, consecutive_failures, failure_rate, probe holder and lease,
updated_at, version: readable in the console).

Cost, and what it means:

- The shared state is written only when it changes (closed→open, open→half-open,
  half-open→closed or →open), in a transaction that re-reads it and writes nothing if another
  instance already made the change, so two instances opening at once record one change. The one
  other write is taking over an abandoned probe lease (at most once per ``probe_lease``).
- The counters that decide opening (consecutive failures; failures among the last
  ``rate_window_calls`` calls within ``rate_window``) live in each instance's memory: keeping them
  in the store would cost a write per call, which is exactly what this design avoids. So each
  instance decides from its own calls (a failing manufacturer fails every instance's calls, so
  the busiest instance opens first), and once any one opens, the shared state stops them all.
- Reads go through a cache. A state other than closed is kept ``cache_ttl`` (5 s by default), and
  so is what :meth:`CircuitBreaker.state` (the metric, a status page) answers. A closed state, as
  the calls' admission (``before_call``, ``record_success``) sees it, is kept ``closed_ttl``
  (15 minutes by default), because every failure that counts against the manufacturer reads the
  shared state again before it is counted: an instance whose cache still says closed after
  another instance opened the breaker makes at most one more failing call (one per thread in
  flight) before it stops. What a long closed cache can let through meanwhile is calls that
  *succeed* (the manufacturer answers this instance): real load, but no harm, and no vote on the
  shared state, which only the probe holder closes. Closing is seen at once by instances that
  kept "open" (they read afresh when its timeout ends, to claim the probe) and within
  ``cache_ttl`` by those that kept "half-open". Counters restart whenever an instance sees the
  state change. The cache is per instance (one breaker per manufacturer in each gateway) and
  behind the breaker's lock.

Half-open, "exactly one probe": the instance that moves the state to half-open claims the probe
in the same transaction (``probe_holder``, ``probe_lease_until``); only the holder lets calls
through, one at a time, until ``success_threshold`` successes close the breaker or a failure
reopens it; every other instance is refused until the lease ends. If the holder disappears, the
first instance to call after ``probe_lease_until`` takes the lease over (again in a transaction).
Guaranteed across instances: at most one holder per lease; within the holder, one call in flight
at a time. A probe still running when its lease ends may overlap the next holder's, so
``probe_lease`` must exceed the adapter's request timeout. A call admitted but never reported
(its caller raised between admission and the call, without ``cancel``) holds the holder's slot
only until the lease ends: the next call after it claims a new lease, which frees the slot.
Without that, one such caller kept its instance refusing every probe, and renewing the lease
kept every other instance out too: a manufacturer cut off for good after a one-hour outage.

Which errors count: :class:`~hpsteer.errors.OemUnavailable` (5xx, timeouts, gateway pages), but
not :class:`~hpsteer.errors.OemRateLimited` (the rate budget handles spent limits). A device or
gateway offline (:class:`~hpsteer.errors.DeviceOffline`), a rejected command and refused
credentials are faults of one device or account, not of the manufacturer: they are ignored.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from hpsteer.domain.instants import format_instant
from hpsteer.errors import (
    CircuitOpen,
    ConcurrencyConflict,
    InvalidInput,
    OemRateLimited,
    OemUnavailable,
)
from hpsteer.observability.metrics import CIRCUIT_BREAKER_STATE, Metrics, metrics
from hpsteer.ports.clock import Clock
from hpsteer.ports.store import Document, DocumentStore, Transaction

__all__ = [
    "BreakerConfig",
    "BreakerRecord",
    "BreakerState",
    "CircuitBreaker",
    "counts_against_manufacturer",
]

T = TypeVar("T")
BreakerState = Literal["closed", "half_open", "open"]
_METRIC_VALUES: Final[dict[BreakerState, int]] = {"closed": 0, "half_open": 1, "open": 2}
_MANUFACTURER = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The seed's success threshold and timeout (2 successes, 5 minutes); its 5 consecutive
    failures raised to 8, plus a failure-rate rule of 80 % over at least 20 calls.

    Why not the seed's 5, nor a rate of 50 % over 10 calls: a failure here is one operation
    (a read after its retries, a translation, a send), and a command makes several of them, each
    of one to three HTTP calls. Against a cloud that answers 30 % of calls with a 5xx and is
    otherwise up (the ``heavy`` fault profile), those thresholds opened the breaker by chance
    several times a day per manufacturer, and every opening cut the manufacturer off for 5 to
    40 minutes (a failed probe reopens it): in 100 heavy campaign runs, 360 commands failed
    for good. With these, 180 did (``benchmarks.campaign``). A real outage fails every call,
    so it still opens within 8 operations."""

    failure_threshold: int = 8
    """Open after this many consecutive manufacturer failures."""
    success_threshold: int = 2
    """Close after this many successful probes in a row while half-open."""
    open_timeout: timedelta = timedelta(minutes=5)
    """Stay open this long, then let a probe through (half-open)."""
    failure_rate_threshold: float = 0.8
    """Open when at least this share of the recent calls failed..."""
    rate_window_calls: int = 20
    """...among at most this many of the latest calls..."""
    rate_window: timedelta = timedelta(minutes=2)
    """...made within this time..."""
    rate_min_calls: int = 20
    """...and there were at least this many of them."""
    probe_lease: timedelta = timedelta(minutes=1)
    """How long a half-open probe holder keeps the probe (longer than a request's timeout)."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.success_threshold < 1:
            raise InvalidInput("breaker thresholds must be at least 1")
        if not 0.0 < self.failure_rate_threshold <= 1.0:
            raise InvalidInput("failure_rate_threshold must be in (0, 1]")
        if not 1 <= self.rate_min_calls <= self.rate_window_calls:
            raise InvalidInput("need 1 <= rate_min_calls <= rate_window_calls")
        for name in ("open_timeout", "rate_window", "probe_lease"):
            if getattr(self, name) <= timedelta(0):
                raise InvalidInput(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """The shared state as stored in ``manufacturers/{manufacturer}``, field ``breaker``."""

    state: BreakerState = "closed"
    version: int = 0
    """Counts the changes written so far (0: never written)."""
    updated_at: datetime | None = None
    reason: str = ""
    opened_at: datetime | None = None
    half_open_at: datetime | None = None
    """While open: when it may half-open; while half-open: when it did."""
    consecutive_failures: int = 0
    """The opening instance's consecutive failures when it opened."""
    failure_rate: float | None = None
    """The opening instance's failure rate over its window when it opened (if it had one)."""
    probe_holder: str | None = None
    probe_lease_until: datetime | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "version": self.version,
            "updated_at": self.updated_at,
            "reason": self.reason,
            "opened_at": self.opened_at,
            "half_open_at": self.half_open_at,
            "consecutive_failures": self.consecutive_failures,
            "failure_rate": self.failure_rate,
            "probe_holder": self.probe_holder,
            "probe_lease_until": self.probe_lease_until,
        }

    @classmethod
    def from_document(cls, document: Document | None) -> BreakerRecord:
        data = None if document is None else document.data.get("breaker")
        if not isinstance(data, dict):
            return cls()
        state = data.get("state")
        if state not in _METRIC_VALUES:
            raise InvalidInput(
                f"{document.path if document else ''}: unknown breaker state {state!r}"
            )
        return cls(
            state=state,
            version=int(data.get("version", 0)),
            updated_at=data.get("updated_at"),
            reason=str(data.get("reason", "")),
            opened_at=data.get("opened_at"),
            half_open_at=data.get("half_open_at"),
            consecutive_failures=int(data.get("consecutive_failures", 0)),
            failure_rate=data.get("failure_rate"),
            probe_holder=data.get("probe_holder"),
            probe_lease_until=data.get("probe_lease_until"),
        )


def _when(instant: datetime | None) -> str:
    return "?" if instant is None else format_instant(instant)


def counts_against_manufacturer(err: BaseException) -> bool:
    """True for a failure of the manufacturer's cloud; device, account and limit faults are not."""
    return isinstance(err, OemUnavailable) and not isinstance(err, OemRateLimited)


class CircuitBreaker:
    """One manufacturer's breaker as seen by this instance; see the module docstring."""

    def __init__(
        self,
        store: DocumentStore,
        manufacturer: str,
        clock: Clock,
        config: BreakerConfig | None = None,
        cache_ttl: timedelta = timedelta(seconds=5),
        *,
        closed_ttl: timedelta = timedelta(minutes=15),
        metrics: Metrics = metrics,
    ) -> None:
        if not isinstance(manufacturer, str) or not _MANUFACTURER.match(manufacturer):
            raise InvalidInput(f"not a manufacturer name: {manufacturer!r}")
        self._store = store
        self._manufacturer = manufacturer
        self._clock = clock
        self._config = config or BreakerConfig()
        self._cache_ttl = cache_ttl
        self._closed_ttl = max(closed_ttl, cache_ttl)
        self._metrics = metrics
        self._path = f"manufacturers/{manufacturer}"
        self.instance_id = uuid.uuid4().hex[:16]
        self._lock = threading.RLock()
        self._cached: BreakerRecord | None = None
        self._cached_at: datetime | None = None
        self._seen_version: int | None = None
        self._consecutive_failures = 0
        self._calls: deque[tuple[datetime, bool]] = deque(maxlen=self._config.rate_window_calls)
        self._probe_successes = 0
        self._probe_in_flight = False

    @property
    def manufacturer(self) -> str:
        return self._manufacturer

    # -- reading the shared state ---------------------------------------------------------------

    def _adopt(self, record: BreakerRecord) -> BreakerRecord:
        """Cache ``record``; if it changed since this instance last looked, restart counting."""
        if record.version != self._seen_version:
            self._seen_version = record.version
            self._consecutive_failures = 0
            self._calls.clear()
            if record.state != "half_open" or record.probe_holder != self.instance_id:
                self._probe_successes = 0
        self._cached, self._cached_at = record, self._clock.now()
        self._metrics.set(
            CIRCUIT_BREAKER_STATE, _METRIC_VALUES[record.state], oem=self._manufacturer
        )
        return record

    def _record(self, *, fresh: bool = False, admitting: bool = False) -> BreakerRecord:
        """The shared state, from the cache while it is young enough (module docstring): a
        closed state kept ``closed_ttl`` when ``admitting`` a call, anything else ``cache_ttl``."""
        now = self._clock.now()
        cached, cached_at = self._cached, self._cached_at
        if not fresh and cached is not None and cached_at is not None:
            ttl = self._closed_ttl if admitting and cached.state == "closed" else self._cache_ttl
            if now < cached_at + ttl:
                return cached
        return self._adopt(BreakerRecord.from_document(self._store.get(self._path)))

    def state(self) -> BreakerState:
        """The shared state as this instance sees it (at most ``cache_ttl`` old). An open breaker
        whose timeout has passed stays "open" until some instance's call half-opens it."""
        with self._lock:
            return self._record().state

    def metric_value(self) -> int:
        """``circuit_breaker_state``: 0 closed, 1 half-open, 2 open."""
        return _METRIC_VALUES[self.state()]

    # -- changing it ----------------------------------------------------------------------------

    def _change(
        self,
        applies: Callable[[BreakerRecord], bool],
        make: Callable[[BreakerRecord], BreakerRecord],
    ) -> tuple[BreakerRecord, bool]:
        """Write ``make(current)`` if ``applies(current)`` still holds in the store, atomically.

        Returns the stored record afterwards and whether this call wrote it. Another instance
        writing at the same time makes the transaction re-run, see its change and write nothing.
        """

        def attempt(tx: Transaction) -> tuple[BreakerRecord, bool]:
            document = tx.get(self._path)
            current = BreakerRecord.from_document(document)
            if not applies(current):
                return current, False
            target = replace(make(current), version=current.version + 1)
            if document is None:
                tx.set(self._path, {"breaker": target.to_data()}, merge=True)
            else:
                tx.update(self._path, {"breaker": target.to_data()})
            return target, True

        try:
            record, wrote = self._store.run_transaction(attempt)
        except ConcurrencyConflict:
            # Others keep writing this document: they are changing the state; read what they did.
            return self._record(fresh=True), False
        return self._adopt(record), wrote

    def _open(self, reason: str, *, failure_rate: float | None = None) -> None:
        now = self._clock.now()
        consecutive = self._consecutive_failures
        opened = BreakerRecord(
            state="open",
            updated_at=now,
            reason=reason[:_REASON_CHARS],
            opened_at=now,
            half_open_at=now + self._config.open_timeout,
            consecutive_failures=consecutive,
            failure_rate=failure_rate,
        )
        seen = self._seen_version

        def applies(current: BreakerRecord) -> bool:
            # Only the closed state this instance counted against: if it changed meanwhile
            # (another instance opened, or even opened and closed again), adopt it instead.
            return current.state == "closed" and current.version == seen

        self._change(applies, lambda _: opened)

    def _claim_probe(self, seen: BreakerRecord) -> BreakerRecord:
        """open (timeout passed) → half-open, or take over an expired lease; claims the probe."""
        now = self._clock.now()
        lease_until = now + self._config.probe_lease

        def applies(current: BreakerRecord) -> bool:
            return current.version == seen.version

        def make(current: BreakerRecord) -> BreakerRecord:
            if current.state == "open":
                return replace(
                    current,
                    state="half_open",
                    updated_at=now,
                    half_open_at=now,
                    probe_holder=self.instance_id,
                    probe_lease_until=lease_until,
                )
            return replace(
                current,
                updated_at=now,
                probe_holder=self.instance_id,
                probe_lease_until=lease_until,
            )

        if seen.state == "open":
            self._probe_successes = 0
        record, wrote = self._change(applies, make)
        if wrote:
            # A new lease: whatever this instance admitted under the old one (a caller that
            # never reported) no longer holds the slot.
            self._probe_in_flight = False
        return record

    def _holds_probe(self, record: BreakerRecord) -> bool:
        return record.state == "half_open" and record.probe_holder == self.instance_id

    # -- the calls ------------------------------------------------------------------------------

    def before_call(self) -> None:
        """Return if a call may go to the manufacturer now; else raise :class:`CircuitOpen`."""
        with self._lock:
            record = self._record(admitting=True)
            for _ in range(3):
                now = self._clock.now()
                if record.state == "closed":
                    return
                if record.state == "open":
                    half_open_at = record.half_open_at or now
                    if now < half_open_at:
                        raise CircuitOpen(
                            f"{self._manufacturer}: circuit open since "
                            f"{_when(record.opened_at)}: {record.reason}",
                            retry_at=half_open_at,
                        )
                    record = self._claim_probe(record)
                    continue
                lease_until = record.probe_lease_until or now
                if now >= lease_until:
                    record = self._claim_probe(record)
                    continue
                if record.probe_holder == self.instance_id:
                    if self._probe_in_flight:
                        raise CircuitOpen(
                            f"{self._manufacturer}: circuit half-open, a probe is in flight",
                            retry_at=lease_until,
                        )
                    self._probe_in_flight = True
                    return
                raise CircuitOpen(
                    f"{self._manufacturer}: circuit half-open, another instance probes",
                    retry_at=lease_until,
                )
            raise CircuitOpen(
                f"{self._manufacturer}: circuit state kept changing", retry_at=self._clock.now()
            )

    def cancel(self) -> None:
        """The call ``before_call`` allowed did not happen (e.g. the rate budget refused it):
        free the probe slot without judging the manufacturer."""
        with self._lock:
            self._probe_in_flight = False

    def record_success(self) -> None:
        with self._lock:
            self._probe_in_flight = False
            record = self._record(admitting=True)
            now = self._clock.now()
            if self._holds_probe(record):
                self._probe_successes += 1
                if self._probe_successes >= self._config.success_threshold:
                    closed = BreakerRecord(
                        state="closed",
                        updated_at=now,
                        reason=f"{self._probe_successes} successful probes",
                    )
                    self._change(self._holds_probe, lambda _: closed)
                return
            if record.state == "closed":
                self._consecutive_failures = 0
                self._calls.append((now, True))

    def record_failure(self, err: BaseException) -> None:
        """Count ``err`` if it is the manufacturer's fault (see the module docstring)."""
        with self._lock:
            self._probe_in_flight = False
            if not counts_against_manufacturer(err):
                return
            # Afresh: another instance may have opened the breaker while this one kept
            # "closed" (module docstring); its own count then restarts against what it finds.
            record = self._record(fresh=True)
            now = self._clock.now()
            reason = f"{type(err).__name__}: {err}"
            if self._holds_probe(record):
                self._consecutive_failures = 1
                self._change(
                    self._holds_probe,
                    lambda _: BreakerRecord(
                        state="open",
                        updated_at=now,
                        reason=f"probe failed: {reason}"[:_REASON_CHARS],
                        opened_at=now,
                        half_open_at=now + self._config.open_timeout,
                        consecutive_failures=1,
                    ),
                )
                return
            if record.state != "closed":
                return  # a call that started before the breaker opened: nothing to learn
            self._consecutive_failures += 1
            self._calls.append((now, False))
            if self._consecutive_failures >= self._config.failure_threshold:
                self._open(f"{self._consecutive_failures} consecutive failures; last: {reason}")
                return
            rate = self._failure_rate(now)
            if rate is not None and rate >= self._config.failure_rate_threshold:
                self._open(
                    f"failure rate {rate:.0%} over the last {len(self._calls)} calls; "
                    f"last: {reason}",
                    failure_rate=rate,
                )

    def _failure_rate(self, now: datetime) -> float | None:
        while self._calls and self._calls[0][0] <= now - self._config.rate_window:
            self._calls.popleft()
        if len(self._calls) < self._config.rate_min_calls:
            return None
        return sum(1 for _, ok in self._calls if not ok) / len(self._calls)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` guarded by the breaker: refused while open, its outcome recorded."""
        self.before_call()
        try:
            result = fn()
        except Exception as err:  # recorded (if it counts against the manufacturer), re-raised
            self.record_failure(err)
            raise
        finally:
            self._probe_in_flight = False
        self.record_success()
        return result
