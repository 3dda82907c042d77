"""Rate budgets per manufacturer account, shared by every function instance through the store.

A :class:`RateBudget` admits a call only if it fits every window the manufacturer imposes at once
(ViCare: 120 per 10 minutes *and* 1,450 per 24 hours), so that hpsteer never provokes the
manufacturer's block (ViCare blocks for 24 hours). ``acquire`` either counts the call or raises
:class:`~hpsteer.errors.OemRateLimited` with ``retry_at``: acquiring at ``retry_at`` succeeds
unless other calls were admitted (or booked) meanwhile.

Shares: each window's limit is split once, ``command_cap = floor(limit * (1 - read_share))``
and ``read_cap = limit - command_cap`` (ViCare: 84 + 36 per 10 minutes, 1,015 + 435 per day).
Commands and reads (polling) each spend only their own share: commands never starve polling and
polling never starves commands, and together they never exceed the limit. The price is that an
unused share is not lent to the other kind.

Windows: sliding windows counted in fixed sub-buckets aligned to the epoch (a window of a day or
more in 24 buckets, e.g. one hour each; shorter windows in 10, e.g. one minute for 10 minutes).
A bucket is counted while any part of it lies within the last window, so the count is never below
the true number of calls in *any* window of that length ending now, whatever the manufacturer's
alignment: the budget never over-admits. It is conservative by at most one bucket: a call is
held for between one window and one window plus one bucket (10 to 11 minutes; 24 to 25 hours),
so a saturated budget admits at least 10/11 resp. 24/25 of its share. In general everything
counted is some calls somewhere in a span of time (a bucket, or a booked instant's span, below),
which counts in every window that can hold a call made in it: the windows ending in
``[start, end + window)``. A call is admitted only if, in every window ending from now on in
which it counts, what is counted and booked stays within the cap (:class:`_Counted`); with
nothing booked that is the count of the window ending now, as above.

Storage: one document per account, ``manufacturers/{manufacturer}/accounts/{account_id}``, field
``budget`` (per window: limit, caps, buckets with start_at, end_at, commands, reads; the live
``bookings``; and ``blocked_until`` when the manufacturer blocked us), read and updated in one
transaction per ``acquire``: one write per admitted call, none per refusal, and concurrent
instances cannot both take the last unit. When the manufacturer itself reports a block (ViCare's
429 with ``limitReset``), :meth:`RateBudget.block_until` records it and every call is refused
until then. Calls we do not see (the household's own app counts against ViCare's limit too) can
still reach the manufacturer's limit first: that 429 is what ``block_until`` is for.

**Bookings: calls on a schedule, paid ahead.** Reconciliation polls each device at instants known
in advance (its ticks, every ``poll_stride``-th), and paying each poll with the transaction above
cost a read and a write of the account's document per poll: about 90 + 90 per device-day,
$0.0033 of a device-month (``benchmarks.cloud_cost``), issue 10's largest store item.
:meth:`RateBudget.take_scheduled` pays for the calls of a :class:`Schedule` instead (an instant
``at``, then every ``period``, each call made within ``span`` of its instant, booked up to
``horizon`` ahead; reconcile: 12 hours, half an interval). The first poll books as many instants
as fit, in one transaction that writes the booking to the account's document (``bookings``) and
a copy to the holder's (the device: field ``poll_booking``). Every later poll finds the copy on
the device document, which reconciliation reads anyway, and is paid by it with no store
operation at all: the copy pays only for one of its own instants, while ``now`` lies within that
instant's span, for its own account, kind and number of units.

A command's verification read is booked too, one instant at a time: it comes
``verify_delay_seconds`` after the send, and paying it with its own transaction made a completed
command cost two budget transactions. :meth:`RateBudget.acquire_and_book` counts the send's
calls (the send and its translation's read) and books the verification's read at its instant in
the same transaction: one write, of the account's document only. The holder is the command's
document, which only the command log writes, so the budget writes no copy there: dispatch
carries the booking to it in the ``sent`` event it records anyway
(:mod:`hpsteer.services.dispatch`), and :meth:`RateBudget.take_booked` pays the read with it,
no store operation. When the calls of now fit but the instant does not, they are counted and
nothing is booked.

What is not on a schedule or booked (a read's retries, settling a command's unknown outcome, a
poll or verification that comes late, one of a page or a verification delivered again) is
counted call by call as before. Why it stays right:

- *Never over-admitting.* Each booked instant's span counts against every window from the moment
  it is booked, whether its call is made or not, exactly as a bucket does; the call is made
  within the span (checked against the clock just before) or not on the booking at all. A
  verification's instant is checked after the send's calls are counted, so both fit together
  (ViCare: the send's bucket and an instant 10 minutes ahead share windows).
- *Each booked call made once.* The holder promises to make the call of an instant at most
  once; reconciliation keeps that promise by letting only the first delivery of a page of
  a tick poll on bookings (:mod:`hpsteer.services.reconcile`); verification by letting only
  the first delivery (retry count 0) of the attempt's own verification task read on the
  booking. Cloud Tasks delivers at least once: a duplicate of that very delivery running at the
  same moment would read on it too, and nothing short of a write tells the two apart; that
  rare second read is the one call a booking can leave uncounted.
- *Shares.* A booking is of one kind (polls: reads; verifications: commands) and counts only
  against that kind's share.
- *Instances.* A booking is in the store (both documents); any instance that reads the device
  uses it, and an instance that dies holds nothing. Two instances booking the same device at once
  meet in the transaction (both read the holder), so the second takes the first one's booking up.
  A verification's booking that never reaches its command (a crash before ``sent`` is recorded,
  or another delivery recorded it first) is never used: it over-counts.
- *Expiry.* A booking ends with its last instant's span and is forgotten (at the account's next
  write) once no window can count it any more. Instants not used (fresh telemetry made the poll
  unneeded, steering paused, the device was deleted) stay counted until then: an unused booking
  over-counts, never under-counts. Nothing is refunded early, because an instance that read the
  device before a refund could still use an instant refunded.
- *Blocks.* ``block_until`` marks the copy of every holder with a live booking too
  (``blocked_until``): its booked calls are refused until then. A booking whose holder the
  budget may not write names a document to mark instead (``marked_on``; a verification's: the
  device's, which the verification reads anyway) and ``block_until`` sets its field
  :data:`BLOCKED_FIELD`. A booked call whose caller read the device just before (a poll's page,
  a verification), like a call admitted just before, may still go out.
- *How much it over-counts.* An instant counts over its span plus the window, where a call
  counted on its own counts over its bucket plus the window. At a 10-minute interval ViCare's
  10-minute window counts two polls of a device where one is made (of 36), its day 145 of 144
  (of 435); Onecta's day 49 of 48 (of 60: 11 left for retries and late polls); myUplink's minute
  one poll (2 units of 8). An account with several devices books for each; one that finds too
  little room books as many instants as fit (at least :data:`MIN_BOOKED_SLOTS`), else its polls
  are counted one by one as before. A verification's instant counts over its span (5
  minutes, ``VERIFY_BOOKING_SPAN`` of :mod:`hpsteer.adapters.gateway`) plus the window: 15
  minutes of ViCare's 10-minute window instead of 10 to 11, 6 of a minute window instead of 1
  to 1.1; a day about the same.
- Deleting an account's budget document (an operator resetting it) forgets its bookings as it
  forgets every count; a device's or a command's copy then pays for calls nothing counts, until
  it ends.

Alternatives weighed: a *lease* of k read units held by one instance for a short time saves
nothing for the usual account (one household, one device, polled once an interval by whichever
instance Pub/Sub hands its page: the lease would be used once, and a unit counted in the bucket
of now must be spent within that bucket, a minute for ViCare's 10-minute window); *batching* the
devices of one account in a page helps as rarely (one device per account); *reading* the account's
document per poll without a write keeps a quarter of the cost per poll; a booking *without the
device's copy* needs that read to find it. Measured (``benchmarks.cloud_cost``, 20 homes over a
week, everything else the same): reconcile's store operations on budgets went from 91.2 reads +
91.2 writes per device-day to 7.2 + 7.2 (two bookings a device-day, each a read and a write of
the account's document and of the device's; 3.3 retries of reads, counted one by one), and the
total from $0.0293 to $0.0262 per device-month. For verifications, *reading* the account's
document to learn of a block would cost a read per command; the mark on the device's document
costs nothing until a block. Measured (``benchmarks.dispatch``, 1,200 commands): the budget's
store operations per completed command went from 2 reads + 2 writes to 1 + 1, the totals from
9.88 reads + 8.58 writes to 8.88 + 7.58.

Why hand-written: rate-limit libraries (limits, pyrate-limiter, ratelimit) keep one window per
limiter in process memory or Redis; we need several windows at once, shares per kind, bookings,
and state shared across stateless instances through Firestore transactions. None does that.
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Final, Literal

from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.domain.instants import format_instant, instant_or_none
from hpsteer.errors import InvalidInput, OemRateLimited
from hpsteer.ports.clock import Clock
from hpsteer.ports.store import Document, DocumentStore, Transaction

__all__ = [
    "BLOCKED_FIELD",
    "BOOKING_FIELD",
    "MIN_BOOKED_SLOTS",
    "BookedCall",
    "Booking",
    "BudgetKind",
    "RateBudget",
    "Schedule",
    "WindowPlan",
    "plan_windows",
]

BudgetKind = Literal["command", "read"]
_FIELD: Final[dict[str, str]] = {"command": "commands", "read": "reads"}
_KIND: Final[dict[str, BudgetKind]] = {"commands": "command", "reads": "read"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MANUFACTURER = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_DAY_S: Final = 86_400

BOOKING_FIELD: Final = "poll_booking"
"""The field of the holder's document (``devices/{id}``) that carries its booking."""
BLOCKED_FIELD: Final = "budget_blocked_until"
"""The field of a booking's ``marked_on`` document (``devices/{id}``, for the bookings of its
commands' verification reads) where :meth:`RateBudget.block_until` records the block."""
MIN_BOOKED_SLOTS: Final = 2
"""Fewer slots than this fit: the call is counted on its own instead (a booking of one slot
would cost the holder's write for nothing)."""


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """One manufacturer window as the budget counts it."""

    key: str
    """The window's name in the document (its length in seconds: ``"600s"``)."""
    limit: int
    window: timedelta
    bucket: timedelta
    command_cap: int
    read_cap: int

    def cap(self, kind: BudgetKind) -> int:
        return self.command_cap if kind == "command" else self.read_cap

    def bucket_start(self, at: datetime) -> datetime:
        return _EPOCH + ((at - _EPOCH) // self.bucket) * self.bucket


def _bucket_count(window_s: int) -> int:
    preferred = 24 if window_s >= _DAY_S else 10
    return next(k for k in range(preferred, 0, -1) if window_s % k == 0)


def plan_windows(limits: RateLimitConfig) -> tuple[WindowPlan, ...]:
    """The windows of ``limits`` with their sub-buckets and per-kind caps."""
    if not 0.0 <= limits.read_share < 1.0:
        raise InvalidInput(f"read_share must be in [0, 1), got {limits.read_share}")
    if not limits.windows:
        raise InvalidInput("a rate limit needs at least one window")
    plans: list[WindowPlan] = []
    for window in limits.windows:
        plans.append(_plan(window, limits.read_share))
    if len({p.key for p in plans}) != len(plans):
        raise InvalidInput("two rate windows of the same length")
    return tuple(plans)


def _plan(window: RateWindow, read_share: float) -> WindowPlan:
    window_s = window.window.total_seconds()
    if window_s < 1 or window_s != int(window_s) or window.limit < 1:
        raise InvalidInput(f"a rate window needs whole seconds and a positive limit: {window}")
    # The small epsilon keeps 120 * 0.7 = 83.99999… at 84.
    command_cap = math.floor(window.limit * (1.0 - read_share) + 1e-9)
    return WindowPlan(
        key=f"{int(window_s)}s",
        limit=window.limit,
        window=window.window,
        bucket=window.window / _bucket_count(int(window_s)),
        command_cap=command_cap,
        read_cap=window.limit - command_cap,
    )


def _whole_seconds(value: timedelta, name: str) -> int:
    seconds = value.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise InvalidInput(f"{name} must be a positive whole number of seconds, got {value}")
    return int(seconds)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A caller's calls at ``at`` and every ``period`` after, each made within ``span`` of its
    instant, to be booked up to ``horizon`` ahead for ``holder`` (the document that carries the
    booking, field :data:`BOOKING_FIELD`). ``held`` is that field as the caller read it with the
    holder (``None``: none). The caller promises to make the call of an instant at most once."""

    at: datetime
    period: timedelta
    span: timedelta
    horizon: timedelta
    holder: str
    held: Any = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise InvalidInput("a schedule needs an aware instant")
        _whole_seconds(self.period, "a schedule's period")
        _whole_seconds(self.span, "a schedule's span")
        if self.span > self.period:
            raise InvalidInput(f"a schedule's span {self.span} exceeds its period {self.period}")
        if self.horizon < self.period:
            raise InvalidInput(f"a schedule's horizon {self.horizon} is under one period")


@dataclass(frozen=True, slots=True)
class Booking:
    """``units`` calls of ``kind`` booked at each of ``slots`` instants (``first_at`` and every
    ``period`` after), each to be made within ``span`` of its instant: how the account's
    document (list ``budget.bookings``) and the holder's (field :data:`BOOKING_FIELD`) keep it."""

    booking_id: str
    budget_path: str
    holder: str
    kind: BudgetKind
    units: int
    first_at: datetime
    period: timedelta
    slots: int
    span: timedelta
    blocked_until: datetime | None = None
    """Set on the holder's copy when the manufacturer blocked the account (:meth:`RateBudget.
    block_until`): the booking pays for nothing before then."""
    marked_on: str | None = None
    """Where :meth:`RateBudget.block_until` marks a block for this booking when the budget may not
    write the holder (a command's document, which only the command log writes): that
    document's field :data:`BLOCKED_FIELD`. ``None``: on the holder's copy, as above."""

    @property
    def last_at(self) -> datetime:
        return self.first_at + (self.slots - 1) * self.period

    @property
    def ends_at(self) -> datetime:
        """When the last booked call may still be made."""
        return self.last_at + self.span

    def instants(self) -> list[datetime]:
        return [self.first_at + i * self.period for i in range(self.slots)]

    def covers(self, at: datetime, now: datetime) -> bool:
        """Whether ``at`` is one of the booked instants and ``now`` within its span."""
        offset = at - self.first_at
        if offset < timedelta(0) or offset % self.period or offset // self.period >= self.slots:
            return False
        return at <= now < at + self.span

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.booking_id,
            "budget": self.budget_path,
            "holder": self.holder,
            "kind": _FIELD[self.kind],
            "units": self.units,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "period_seconds": int(self.period.total_seconds()),
            "span_seconds": int(self.span.total_seconds()),
            "slots": self.slots,
        }
        if self.blocked_until is not None:
            document["blocked_until"] = self.blocked_until
        if self.marked_on is not None:
            document["marked_on"] = self.marked_on
        return document

    def to_json(self) -> dict[str, Any]:
        """:meth:`to_document` with its instants as ISO strings, for a copy that travels inside a
        JSON record (a command event's detail); :meth:`parse` reads both."""
        return {
            key: format_instant(value) if isinstance(value, datetime) else value
            for key, value in self.to_document().items()
        }

    @classmethod
    def parse(cls, data: Any) -> Booking | None:
        """A booking as :meth:`to_document` or :meth:`to_json` wrote it; ``None`` for anything
        else."""
        if not isinstance(data, Mapping):
            return None
        first_at, kind = instant_or_none(data.get("first_at")), data.get("kind")
        blocked_at = data.get("blocked_until")
        blocked = instant_or_none(blocked_at)
        marked_on = data.get("marked_on")
        units, period_s, span_s, slots = (
            _positive(data.get(key)) for key in ("units", "period_seconds", "span_seconds", "slots")
        )
        booking_id, budget_path, holder = (data.get(key) for key in ("id", "budget", "holder"))
        if (
            first_at is None
            or (blocked_at is not None and blocked is None)
            or not (marked_on is None or isinstance(marked_on, str))
            or not isinstance(kind, str)
            or kind not in _KIND
            or not units
            or not period_s
            or not span_s
            or not slots
            or not (isinstance(booking_id, str) and isinstance(budget_path, str))
            or not isinstance(holder, str)
        ):
            return None
        return cls(
            booking_id=booking_id,
            budget_path=budget_path,
            holder=holder,
            kind=_KIND[kind],
            units=units,
            first_at=first_at,
            period=timedelta(seconds=period_s),
            slots=slots,
            span=timedelta(seconds=span_s),
            blocked_until=blocked,
            marked_on=marked_on,
        )


@dataclass(frozen=True, slots=True)
class BookedCall:
    """A call its caller means to pay with a booking of one instant
    (:meth:`RateBudget.acquire_and_book`): the booking as its holder carries it, the holder's
    path (the caller's own: a booking held elsewhere pays nothing here), and the document the
    booking's blocks are marked on (its ``marked_on``), as the caller read it."""

    booking: Booking
    holder: str
    marked_path: str
    marked: Mapping[str, Any]

    @property
    def blocked_until(self) -> datetime | None:
        """Until when the account is blocked, as far as the holder's copy and the marked document
        tell (the later of the two)."""
        marked = instant_or_none(self.marked.get(BLOCKED_FIELD))
        found = [at for at in (self.booking.blocked_until, marked) if at is not None]
        return max(found, default=None)


def _positive(value: Any) -> int:
    """``value`` if it is a positive integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_Entry = tuple[datetime, datetime, int]
"""Calls counted somewhere in ``[start, end)``: a bucket, or one booked instant's span."""


class _Counted:
    """How many calls ``entries`` count in the window of this length ending at each ``x`` from
    ``now`` on: a step function. An entry counts in every window that can hold a call made in
    its span, the windows ending in ``[start, end + window)``; a window that ended before
    ``now`` holds no call made from now on, so it is not looked at."""

    def __init__(self, entries: list[_Entry], window: timedelta, now: datetime) -> None:
        self.window = window
        self.now = now
        changes: dict[datetime, int] = {}
        for start, end, count in entries:
            if end + window > now:
                first = max(start, now)
                changes[first] = changes.get(first, 0) + count
                changes[end + window] = changes.get(end + window, 0) - count
        self.steps = sorted(changes)
        values: list[int] = []
        total = 0
        for step in self.steps:
            total += changes[step]
            values.append(total)
        # A sparse table: the largest value over any run of steps in two look-ups.
        self.largest = [values]
        size = 1
        while 2 * size <= len(values):
            previous = self.largest[-1]
            self.largest.append(
                [max(previous[i], previous[i + size]) for i in range(len(values) - 2 * size + 1)]
            )
            size *= 2

    def most(self, start: datetime, end: datetime) -> int:
        """The most counted in any window ending in ``[start, end)``."""
        first = max(bisect_right(self.steps, start) - 1, 0)
        last = bisect_left(self.steps, end) - 1
        if last < first:
            return 0
        level = (last - first + 1).bit_length() - 1
        row = self.largest[level]
        return max(0, row[first], row[last - (1 << level) + 1])

    def peak_with(self, added: list[_Entry]) -> int:
        """The most counted, ``added`` included, in any window in which something of ``added``
        counts (0 if nothing does)."""
        changes: dict[datetime, int] = {}
        for start, end, count in added:
            first = max(start, self.now)
            changes[first] = changes.get(first, 0) + count
            changes[end + self.window] = changes.get(end + self.window, 0) - count
        steps = sorted(changes)
        peak = mine = 0
        for step, following in pairwise(steps):
            mine += changes[step]
            if mine > 0:
                peak = max(peak, self.most(step, following) + mine)
        return peak


@dataclass(frozen=True, slots=True)
class _Decision:
    admitted: bool
    retry_at: datetime | None = None
    reason: str = ""


def _blocked(budget: Mapping[str, Any], now: datetime) -> _Decision | None:
    blocked_until = budget.get("blocked_until")
    if blocked_until is not None and now < blocked_until:
        reason = budget.get("blocked_reason") or "the manufacturer blocked this account"
        return _Decision(False, blocked_until, reason)
    return None


def _bookings(budget: Mapping[str, Any]) -> list[Booking]:
    raw = budget.get("bookings")
    found = [Booking.parse(entry) for entry in raw] if isinstance(raw, list) else []
    return [booking for booking in found if booking is not None]


class RateBudget:
    """The budget of one manufacturer account; see the module docstring."""

    def __init__(
        self,
        store: DocumentStore,
        manufacturer: str,
        account_id: str,
        limits: RateLimitConfig,
        clock: Clock,
        *,
        max_attempts: int = 10,
    ) -> None:
        if not isinstance(manufacturer, str) or not _MANUFACTURER.match(manufacturer):
            raise InvalidInput(f"not a manufacturer name: {manufacturer!r}")
        if not isinstance(account_id, str) or "/" in account_id:
            raise InvalidInput(
                f"account id {account_id!r} contains '/', which would split the document path"
            )
        if not _ACCOUNT_ID.match(account_id):
            raise InvalidInput(
                f"account id {account_id!r} must match {_ACCOUNT_ID.pattern} "
                "(it names a document as it is)"
            )
        self._store = store
        self._manufacturer = manufacturer
        self._account_id = account_id
        self._plans = plan_windows(limits)
        self._longest = max(plan.window for plan in self._plans)
        self._clock = clock
        self._max_attempts = max_attempts
        self.path = f"manufacturers/{manufacturer}/accounts/{account_id}"

    @property
    def plans(self) -> tuple[WindowPlan, ...]:
        return self._plans

    # -- the document -----------------------------------------------------------------------------

    @staticmethod
    def _budget(document: Document | None) -> dict[str, Any]:
        budget = None if document is None else document.data.get("budget")
        return budget if isinstance(budget, dict) else {}

    def _live_buckets(
        self, budget: dict[str, Any], plan: WindowPlan, now: datetime
    ) -> list[dict[str, Any]]:
        """The buckets that overlap the window ending now, oldest end first."""
        window = budget.get("windows", {}).get(plan.key, {})
        buckets = [b for b in window.get("buckets", []) if b["end_at"] > now - plan.window]
        return sorted(buckets, key=lambda b: b["end_at"])

    def _entries(self, budget: dict[str, Any], plan: WindowPlan, field: str) -> list[_Entry]:
        """What counts against ``field`` in this window: the buckets, and every booked instant."""
        window = budget.get("windows", {}).get(plan.key, {})
        entries = [
            (b["start_at"], b["end_at"], int(b.get(field, 0))) for b in window.get("buckets", [])
        ]
        for booking in _bookings(budget):
            if _FIELD[booking.kind] == field:
                entries += [(at, at + booking.span, booking.units) for at in booking.instants()]
        return [entry for entry in entries if entry[2] > 0]

    def _live_bookings(self, budget: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """The stored bookings some window can still count (their last span ended less than the
        longest window ago); the others are forgotten with the next write."""
        return [b.to_document() for b in _bookings(budget) if b.ends_at + self._longest > now]

    def _write(self, tx: Transaction, document: Document | None, budget: dict[str, Any]) -> None:
        if document is None:
            tx.set(self.path, {"budget": budget}, merge=True)
        else:
            tx.update(self.path, {"budget": budget})

    # -- deciding ---------------------------------------------------------------------------------

    def _decide(
        self, budget: dict[str, Any], kind: BudgetKind, n: int, now: datetime
    ) -> tuple[_Decision, dict[str, Any] | None]:
        """Count ``n`` calls of ``kind`` now (the budget as it will be), or why not and when."""
        blocked = _blocked(budget, now)
        if blocked is not None:
            return blocked, None
        field = _FIELD[kind]
        reasons: list[str] = []
        for plan in self._plans:
            start = plan.bucket_start(now)
            counted = _Counted(self._entries(budget, plan, field), plan.window, now)
            peak = counted.peak_with([(start, start + plan.bucket, n)])
            if peak > plan.cap(kind):
                reasons.append(f"{peak - n} of {plan.cap(kind)} {field} per {plan.window} used")
        if reasons:
            return _Decision(False, self._retry_at(budget, kind, n, now), "; ".join(reasons)), None
        windows: dict[str, Any] = {}
        for plan in self._plans:
            live = self._live_buckets(budget, plan, now)
            start = plan.bucket_start(now)
            current = next((b for b in live if b["start_at"] == start), None)
            if current is None:
                current = {"start_at": start, "end_at": start + plan.bucket, "commands": 0}
                current["reads"] = 0
                live.append(current)
            current[field] = current.get(field, 0) + n
            windows[plan.key] = {
                "limit": plan.limit,
                "command_cap": plan.command_cap,
                "read_cap": plan.read_cap,
                "bucket_seconds": int(plan.bucket.total_seconds()),
                "buckets": sorted(live, key=lambda b: b["start_at"]),
            }
        updated = {**budget, "windows": windows, "updated_at": now}
        if "bookings" in budget:
            updated["bookings"] = self._live_bookings(budget, now)
        return _Decision(True), updated

    def _retry_at(
        self, budget: dict[str, Any], kind: BudgetKind, n: int, now: datetime
    ) -> datetime:
        """The first instant at which ``n`` calls of ``kind`` fit every window, unless others are
        counted meanwhile: one of the instants at which something counted leaves a window."""
        field = _FIELD[kind]
        entries = {plan.key: self._entries(budget, plan, field) for plan in self._plans}
        counted = {plan.key: _Counted(entries[plan.key], plan.window, now) for plan in self._plans}
        candidates = sorted(
            {
                end + plan.window
                for plan in self._plans
                for _, end, _ in entries[plan.key]
                if end + plan.window > now
            }
        )
        for at in candidates:
            if all(
                counted[plan.key].most(at, plan.bucket_start(at) + plan.bucket + plan.window) + n
                <= plan.cap(kind)
                for plan in self._plans
            ):
                return at
        return candidates[-1] if candidates else now  # once all have left, n fits (n <= cap)

    def _slots_that_fit(
        self,
        budget: dict[str, Any],
        kind: BudgetKind,
        units: int,
        schedule: Schedule,
        now: datetime,
    ) -> int:
        """The most instants of ``schedule`` (from its first, up to its horizon) whose calls fit
        every window together with everything counted and booked already."""
        field = _FIELD[kind]
        counted = [
            (_Counted(self._entries(budget, plan, field), plan.window, now), plan.cap(kind))
            for plan in self._plans
        ]

        def fits(slots: int) -> bool:
            instants = [schedule.at + i * schedule.period for i in range(slots)]
            added = [(at, at + schedule.span, units) for at in instants]
            return all(steps.peak_with(added) <= cap for steps, cap in counted)

        low, high = 0, schedule.horizon // schedule.period  # fits(0); the answer is in between
        while low < high:
            middle = (low + high + 1) // 2
            if fits(middle):
                low = middle
            else:
                high = middle - 1
        return low

    def _check(self, counts: Mapping[BudgetKind, int]) -> None:
        if not counts:
            raise InvalidInput("acquire_all needs at least one kind")
        for kind, n in counts.items():
            if kind not in _FIELD:
                raise InvalidInput(f"kind must be 'command' or 'read', got {kind!r}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InvalidInput(f"n must be a positive integer, got {n!r}")
            for plan in self._plans:
                if n > plan.cap(kind):
                    raise InvalidInput(
                        f"{n} {_FIELD[kind]} can never fit {plan.cap(kind)} per {plan.window}"
                    )

    def _refusal(self, kind: BudgetKind, decision: _Decision) -> OemRateLimited:
        assert decision.retry_at is not None  # every refusal says when
        return OemRateLimited(
            f"{self._manufacturer} account {self._account_id}: {kind} budget spent "
            f"({decision.reason}); retry at {format_instant(decision.retry_at)}",
            retry_at=decision.retry_at,
        )

    def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Count ``n`` calls of ``kind`` now, or raise :class:`OemRateLimited` with ``retry_at``."""
        self.acquire_all({kind: n})

    def acquire_all(self, counts: Mapping[BudgetKind, int]) -> None:
        """Count several kinds at once, all or none, in one transaction (one write): a command
        send that also reads (its translation reads the device) takes a read and a command."""
        self._check(counts)
        now = self._clock.now()

        def attempt(tx: Transaction) -> tuple[_Decision, BudgetKind]:
            document = tx.get(self.path)
            decision, kind, counted = self._count_all(self._budget(document), counts, now)
            if counted is not None:
                self._write(tx, document, counted)
            return decision, kind

        decision, kind = self._store.run_transaction(attempt, max_attempts=self._max_attempts)
        if not decision.admitted:
            raise self._refusal(kind, decision)

    def _count_all(
        self, budget: dict[str, Any], counts: Mapping[BudgetKind, int], now: datetime
    ) -> tuple[_Decision, BudgetKind, dict[str, Any] | None]:
        """``counts`` counted now, all or none: the budget as it will be, or the refusal and the
        kind refused."""
        for kind, n in counts.items():
            decision, updated = self._decide(budget, kind, n, now)
            if updated is None:
                return decision, kind, None
            budget = updated
        return _Decision(True), next(iter(counts)), budget

    # -- bookings ---------------------------------------------------------------------------------

    def _usable(
        self,
        booking: Booking | None,
        kind: BudgetKind,
        units: int,
        schedule: Schedule,
        now: datetime,
    ) -> Booking | None:
        if (
            booking is None
            or booking.budget_path != self.path
            or booking.holder != schedule.holder
            or booking.kind != kind
            or booking.units != units
            or not booking.covers(schedule.at, now)
        ):
            return None
        return booking

    def take_scheduled(self, kind: BudgetKind, units: int, schedule: Schedule) -> Booking | None:
        """Pay for the ``units`` calls of ``kind`` that ``schedule`` makes at its instant ``at``,
        now (module docstring, "Bookings"). The holder's booking covers them: no store operation
        at all. Else one transaction (the account's document and the holder's): a booking
        another instance just made is taken up; or a new one of as many instants as fit (at least
        :data:`MIN_BOOKED_SLOTS`, at most the horizon) is written to both documents; or the calls
        are counted on their own, as :meth:`acquire` counts them (then ``None``). Raises
        :class:`OemRateLimited` with ``retry_at`` when not even that fits, or while the account
        is blocked."""
        self._check({kind: units})
        now = self._clock.now()
        held = self._usable(Booking.parse(schedule.held), kind, units, schedule, now)
        if held is not None:
            if held.blocked_until is not None and now < held.blocked_until:
                reason = "the manufacturer blocked this account"
                raise self._refusal(kind, _Decision(False, held.blocked_until, reason))
            return held

        def attempt(tx: Transaction) -> tuple[_Decision, Booking | None]:
            document = tx.get(self.path)
            holder = tx.get(schedule.holder)
            budget = self._budget(document)
            blocked = _blocked(budget, now)
            if blocked is not None:
                return blocked, None
            if holder is not None:
                found = Booking.parse(holder.data.get(BOOKING_FIELD))
                found = self._usable(found, kind, units, schedule, now)
                if found is not None and any(
                    b.booking_id == found.booking_id for b in _bookings(budget)
                ):
                    return _Decision(True), found  # another instance booked it a moment ago
                if schedule.at <= now < schedule.at + schedule.span:
                    slots = self._slots_that_fit(budget, kind, units, schedule, now)
                    if slots >= MIN_BOOKED_SLOTS:
                        booking = self._booking(kind, units, schedule, slots, now)
                        updated = {
                            **budget,
                            "bookings": [*self._live_bookings(budget, now), booking.to_document()],
                            "updated_at": now,
                        }
                        self._write(tx, document, updated)
                        tx.update(schedule.holder, {BOOKING_FIELD: booking.to_document()})
                        return _Decision(True), booking
            decision, counted = self._decide(budget, kind, units, now)
            if counted is not None:
                self._write(tx, document, counted)
            return decision, None

        decision, booking = self._store.run_transaction(attempt, max_attempts=self._max_attempts)
        if not decision.admitted:
            raise self._refusal(kind, decision)
        return booking

    def _booking(
        self, kind: BudgetKind, units: int, schedule: Schedule, slots: int, now: datetime
    ) -> Booking:
        named = f"{self.path}|{schedule.holder}|{schedule.at.isoformat()}|{now.isoformat()}"
        return Booking(
            booking_id=hashlib.sha256(named.encode()).hexdigest()[:16],
            budget_path=self.path,
            holder=schedule.holder,
            kind=kind,
            units=units,
            first_at=schedule.at,
            period=schedule.period,
            slots=slots,
            span=schedule.span,
        )

    def acquire_and_book(
        self,
        counts: Mapping[BudgetKind, int],
        kind: BudgetKind,
        units: int,
        at: datetime,
        span: timedelta,
        holder: str,
        marked_on: str,
    ) -> Booking | None:
        """Count ``counts`` now, as :meth:`acquire_all` does, and in the same transaction (one
        write of the account's document) book ``units`` calls of ``kind`` at the one instant
        ``at``, to be made within ``span`` of it (module docstring, "Bookings"). The booking is
        written to the account's document only, not to ``holder``'s: the caller carries it
        there itself (a command's verification read: the command log writes the command), and
        :meth:`block_until` marks a block for it on ``marked_on`` (field
        :data:`BLOCKED_FIELD`), a document the caller reads before it pays with the booking
        (:meth:`take_booked`). Raises :class:`OemRateLimited` as :meth:`acquire_all` does (and
        books nothing); when the calls of now fit but the booked instant does not, they are
        counted and ``None`` is returned: the later call is then counted on its own."""
        self._check(counts)
        self._check({kind: units})
        if at.tzinfo is None:
            raise InvalidInput("a booked instant must be aware")
        if not holder or not marked_on:
            raise InvalidInput("a booking needs its holder and the document its blocks mark")
        one = Schedule(at=at, period=span, span=span, horizon=span, holder=holder)
        now = self._clock.now()

        def attempt(tx: Transaction) -> tuple[_Decision, BudgetKind, Booking | None]:
            document = tx.get(self.path)
            decision, refused, counted = self._count_all(self._budget(document), counts, now)
            if counted is None:
                return decision, refused, None
            booking = None
            if self._slots_that_fit(counted, kind, units, one, now) == 1:
                booking = replace(self._booking(kind, units, one, 1, now), marked_on=marked_on)
                counted = {
                    **counted,
                    "bookings": [*self._live_bookings(counted, now), booking.to_document()],
                }
            self._write(tx, document, counted)
            return decision, refused, booking

        decision, refused, booking = self._store.run_transaction(
            attempt, max_attempts=self._max_attempts
        )
        if not decision.admitted:
            raise self._refusal(refused, decision)
        return booking

    def take_booked(self, kind: BudgetKind, units: int, booked: BookedCall) -> bool:
        """Whether ``booked`` pays for ``units`` calls of ``kind`` now, with no store operation:
        a booking of this account, held by ``booked.holder``, of one instant, of this kind and
        number of units, whose span holds now, and whose marked document (``marked_on``) is
        the one the caller read. ``False``: the caller counts the calls on its own
        (:meth:`acquire_all`). Raises :class:`OemRateLimited` while a block marked for it lasts.
        The holder promises to make the booked call at most once."""
        self._check({kind: units})
        now = self._clock.now()
        booking = booked.booking
        if (
            booking.budget_path != self.path
            or booking.holder != booked.holder
            or booking.marked_on is None
            or booking.marked_on != booked.marked_path
            or booking.kind != kind
            or booking.units != units
            or booking.slots != 1
            or not booking.covers(booking.first_at, now)
        ):
            return False
        blocked_until = booked.blocked_until
        if blocked_until is not None and now < blocked_until:
            reason = "the manufacturer blocked this account"
            raise self._refusal(kind, _Decision(False, blocked_until, reason))
        return True

    def bookings(self) -> list[Booking]:
        """The bookings the account's document holds now."""
        return _bookings(self._budget(self._store.get(self.path)))

    # -- the manufacturer's own block ------------------------------------------------------------

    def block_until(self, until: datetime, reason: str = "") -> None:
        """Refuse every call until ``until`` (the manufacturer said so); a later block wins. The
        live bookings are told too, since a booked call asks nothing of the account's document:
        the holder's copy (its ``blocked_until``), or, for a booking whose holder the budget may
        not write, its ``marked_on`` document (field :data:`BLOCKED_FIELD`). Documents that no
        longer exist are left alone."""
        if until.tzinfo is None:
            raise InvalidInput("block_until needs an aware instant")
        now = self._clock.now()

        def attempt(tx: Transaction) -> None:
            document = tx.get(self.path)
            budget = self._budget(document)
            current = budget.get("blocked_until")
            if current is not None and current >= until:
                return
            live = [booking for booking in _bookings(budget) if booking.ends_at > now]
            holders = {booking.holder for booking in live if booking.marked_on is None}
            marked = {booking.marked_on for booking in live if booking.marked_on is not None}
            changes: dict[str, dict[str, Any]] = {}
            for path in sorted(holders | marked):
                found = tx.get(path)
                if found is None:
                    continue
                change: dict[str, Any] = {}
                held = Booking.parse(found.data.get(BOOKING_FIELD))
                if path in holders and held is not None and held.budget_path == self.path:
                    change[BOOKING_FIELD] = replace(held, blocked_until=until).to_document()
                seen = instant_or_none(found.data.get(BLOCKED_FIELD))
                if path in marked and (seen is None or seen < until):
                    change[BLOCKED_FIELD] = until
                if change:
                    changes[path] = change
            blocked = {
                **budget,
                "blocked_until": until,
                "blocked_reason": reason or "the manufacturer blocked this account",
                "updated_at": now,
            }
            self._write(tx, document, blocked)
            for path, change in changes.items():
                tx.update(path, change)

        self._store.run_transaction(attempt, max_attempts=self._max_attempts)

    def usage(self, kind: BudgetKind) -> dict[str, int]:
        """Calls of ``kind`` counted in each window ending now (by window key), booked ones
        included, as the store holds them."""
        now = self._clock.now()
        budget = self._budget(self._store.get(self.path))
        field = _FIELD[kind]
        return {
            plan.key: sum(
                count
                for start, end, count in self._entries(budget, plan, field)
                if start <= now < end + plan.window
            )
            for plan in self._plans
        }
