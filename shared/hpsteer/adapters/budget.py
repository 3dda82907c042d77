"""Rate budgets per manufacturer account, shared by every function instance through the store.

A :class:`RateBudget` admits a call only if it fits every window the manufacturer imposes at once
(ViCare: 120 per 10 minutes *and* 1,450 per 24 hours), so that hpsteer never provokes the
manufacturer's block (ViCare blocks for 24 hours). ``acquire`` either counts the call or raises
:class:`~hpsteer.errors.OemRateLimited` with ``retry_at``: acquiring at ``retry_at`` succeeds
unless other calls were admitted meanwhile.

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
so a saturated budget admits at least 10/11 resp. 24/25 of its share.

Storage: one document per account, ``manufacturers/{manufacturer}/accounts/{account_id}``, field
``budget`` (per window: limit, caps, buckets with start_at, end_at, commands, reads; and
``blocked_until`` when the manufacturer blocked us), read and updated in one transaction per
``acquire``: one write per admitted call, none per refusal, and concurrent instances cannot both
take the last unit. When the manufacturer itself reports a block (ViCare's 429 with
``limitReset``), :meth:`RateBudget.block_until` records it and every call is refused until then.
Calls we do not see (the household's own app counts against ViCare's limit too) can still reach
the manufacturer's limit first: that 429 is what ``block_until`` is for.

Why hand-written: rate-limit libraries (limits, pyrate-limiter, ratelimit) keep one window per
limiter in process memory or Redis; we need several windows at once, shares per kind, and state
shared across stateless instances through Firestore transactions. None does that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.domain.instants import format_instant
from hpsteer.errors import InvalidInput, OemRateLimited
from hpsteer.ports.clock import Clock
from hpsteer.ports.store import Document, DocumentStore, Transaction

__all__ = ["BudgetKind", "RateBudget", "WindowPlan", "plan_windows"]

BudgetKind = Literal["command", "read"]
_FIELD: Final[dict[str, str]] = {"command": "commands", "read": "reads"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MANUFACTURER = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_DAY_S: Final = 86_400


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


@dataclass(frozen=True, slots=True)
class _Decision:
    admitted: bool
    retry_at: datetime | None = None
    reason: str = ""


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

    def _write(self, tx: Transaction, document: Document | None, budget: dict[str, Any]) -> None:
        if document is None:
            tx.set(self.path, {"budget": budget}, merge=True)
        else:
            tx.update(self.path, {"budget": budget})

    # -- deciding ---------------------------------------------------------------------------------

    def _decide(
        self, budget: dict[str, Any], kind: BudgetKind, n: int, now: datetime
    ) -> tuple[_Decision, dict[str, Any] | None]:
        field = _FIELD[kind]
        blocked_until = budget.get("blocked_until")
        if blocked_until is not None and now < blocked_until:
            reason = budget.get("blocked_reason") or "the manufacturer blocked this account"
            return _Decision(False, blocked_until, reason), None
        retry_at: datetime | None = None
        reasons: list[str] = []
        windows: dict[str, Any] = {}
        for plan in self._plans:
            live = self._live_buckets(budget, plan, now)
            used = sum(b[field] for b in live)
            cap = plan.cap(kind)
            if used + n > cap:
                dropped, at = 0, now
                for bucket in live:
                    dropped += bucket[field]
                    at = bucket["end_at"] + plan.window
                    if used - dropped + n <= cap:
                        break
                retry_at = at if retry_at is None else max(retry_at, at)
                reasons.append(f"{used} of {cap} {field} per {plan.window} used")
                continue
            start = _EPOCH + ((now - _EPOCH) // plan.bucket) * plan.bucket
            current = next((b for b in live if b["start_at"] == start), None)
            if current is None:
                current = {"start_at": start, "end_at": start + plan.bucket, "commands": 0}
                current["reads"] = 0
                live.append(current)
            current[field] += n
            windows[plan.key] = {
                "limit": plan.limit,
                "command_cap": plan.command_cap,
                "read_cap": plan.read_cap,
                "bucket_seconds": int(plan.bucket.total_seconds()),
                "buckets": sorted(live, key=lambda b: b["start_at"]),
            }
        if retry_at is not None:
            return _Decision(False, retry_at, "; ".join(reasons)), None
        updated = {**budget, "windows": windows, "updated_at": now}
        return _Decision(True), updated

    def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Count ``n`` calls of ``kind`` now, or raise :class:`OemRateLimited` with ``retry_at``."""
        self.acquire_all({kind: n})

    def acquire_all(self, counts: Mapping[BudgetKind, int]) -> None:
        """Count several kinds at once, all or none, in one transaction (one write): a command
        send that also reads (its translation reads the device) takes a read and a command."""
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
        if not counts:
            raise InvalidInput("acquire_all needs at least one kind")
        now = self._clock.now()

        def attempt(tx: Transaction) -> tuple[_Decision, BudgetKind]:
            document = tx.get(self.path)
            budget = self._budget(document)
            for kind, n in counts.items():
                decision, updated = self._decide(budget, kind, n, now)
                if updated is None:
                    return decision, kind
                budget = updated
            self._write(tx, document, budget)
            return _Decision(True), next(iter(counts))

        decision, kind = self._store.run_transaction(attempt, max_attempts=self._max_attempts)
        if not decision.admitted:
            assert decision.retry_at is not None  # every refusal says when
            raise OemRateLimited(
                f"{self._manufacturer} account {self._account_id}: {kind} budget spent "
                f"({decision.reason}); retry at {format_instant(decision.retry_at)}",
                retry_at=decision.retry_at,
            )

    def block_until(self, until: datetime, reason: str = "") -> None:
        """Refuse every call until ``until`` (the manufacturer said so); a later block wins."""
        if until.tzinfo is None:
            raise InvalidInput("block_until needs an aware instant")

        def attempt(tx: Transaction) -> None:
            document = tx.get(self.path)
            budget = self._budget(document)
            current = budget.get("blocked_until")
            if current is not None and current >= until:
                return
            blocked = {
                **budget,
                "blocked_until": until,
                "blocked_reason": reason or "the manufacturer blocked this account",
                "updated_at": self._clock.now(),
            }
            self._write(tx, document, blocked)

        self._store.run_transaction(attempt, max_attempts=self._max_attempts)

    def usage(self, kind: BudgetKind) -> dict[str, int]:
        """Calls of ``kind`` counted in each window now (by window key), as the store holds them."""
        now = self._clock.now()
        budget = self._budget(self._store.get(self.path))
        field = _FIELD[kind]
        return {
            plan.key: sum(b[field] for b in self._live_buckets(budget, plan, now))
            for plan in self._plans
        }
