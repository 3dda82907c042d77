"""The fault profiles of ``hpsteer simulate``: what goes wrong in the manufacturers' clouds, in
the homes, and on the way between the functions.

- ``none``: healthy clouds, every message and task delivered once, no crash. Households still
  live: they change their setpoint in the app now and then (that is not a fault, and overrides
  must be respected whatever the profile).
- ``realistic``: what a normal week shows: a few 5xx, 429s and timeouts, commands now and then
  not applied or applied late, devices rebooting, households changing their setting, and
  Pub/Sub delivering some messages twice.
- ``heavy`` (the fault campaigns): 30 % manufacturer 5xx, 429 storms, a one-hour outage of one
  manufacturer (every API call answered 503), 5 % of accepted commands not applied, every Pub/Sub
  message and Cloud Task delivered two or three times, and crashes between handler steps (the
  command path's checkpoints, and a Pub/Sub handler dying after its work but before its ack).

Every draw comes from the run's seed, so a run is reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hpsteer.sim import MANUFACTURERS
from hpsteer.sim.faults import FaultPlan, FaultSpec

__all__ = ["Chaos", "Crash", "Outage", "chaos_for"]


class Crash(RuntimeError):
    """A simulated instance death between two steps of a handler."""


@dataclass(frozen=True, slots=True)
class Outage:
    manufacturer: str
    start_at: datetime
    end_at: datetime


OUTAGE_SPEC = FaultSpec(server_error_rate=1.0, server_error_status=503)
"""A manufacturer's cloud during an outage: every API call answered 503."""


@dataclass
class Chaos:
    profile: str
    faults: FaultPlan
    message_copies: tuple[int, int] = (1, 1)
    """Each Pub/Sub message and Cloud Task is delivered between these many times (inclusive)."""
    duplicate_share: float = 0.0
    """Share of messages and tasks delivered more than once (drawn per delivery)."""
    crash_rate: float = 0.0
    """Chance that an instance dies at a checkpoint of the command path, or after a Pub/Sub
    handler's work and before its acknowledgement."""
    outage: Outage | None = None
    rng: random.Random = field(default_factory=random.Random)

    def copies(self) -> int:
        """How many times this delivery happens (1: once)."""
        low, high = self.message_copies
        if high <= 1 or self.rng.random() >= self.duplicate_share:
            return 1
        return self.rng.randint(max(low, 2), high)

    def crashes(self) -> bool:
        return self.crash_rate > 0.0 and self.rng.random() < self.crash_rate

    def in_outage(self, manufacturer: str, at: datetime) -> bool:
        outage = self.outage
        return (
            outage is not None
            and outage.manufacturer == manufacturer
            and outage.start_at <= at < outage.end_at
        )

    def apply_outage(self, now: datetime) -> None:
        """Start or end the outage as ``now`` says (the manufacturer's normal faults return)."""
        outage = self.outage
        if outage is None:
            return
        during = outage.start_at <= now < outage.end_at
        self.faults.set_manufacturer(
            outage.manufacturer, OUTAGE_SPEC if during else _spec(self.profile)
        )


def _spec(profile: str) -> FaultSpec:
    if profile == "realistic":
        return FaultSpec(
            server_error_rate=0.02,
            rate_limit_rate=0.005,
            retry_after_s=30,
            timeout_rate=0.005,
            not_applied_rate=0.02,
            applied_late_rate=0.02,
            apply_delay=timedelta(minutes=8),
            reboot_rate_per_day=0.05,
            user_change_rate_per_day=0.1,
        )
    if profile == "heavy":
        return FaultSpec(
            server_error_rate=0.30,
            server_error_status=503,
            rate_limit_rate=0.05,
            retry_after_s=60,
            timeout_rate=0.02,
            not_applied_rate=0.05,
            applied_late_rate=0.05,
            apply_delay=timedelta(minutes=8),
            reboot_rate_per_day=0.1,
            user_change_rate_per_day=0.15,
        )
    return FaultSpec(user_change_rate_per_day=0.05)


def chaos_for(profile: str, seed: int, start_at: datetime, days: int) -> Chaos:
    """The faults of ``profile`` for a run of ``days`` from ``start_at``, drawn from ``seed``."""
    rng = random.Random(f"chaos/{profile}/{seed}")
    spec = _spec(profile)
    faults = FaultPlan(seed=seed, by_manufacturer=dict.fromkeys(MANUFACTURERS, spec))
    if profile == "none":
        return Chaos(profile, faults, rng=rng)
    if profile == "realistic":
        return Chaos(profile, faults, message_copies=(2, 2), duplicate_share=0.05, rng=rng)
    hours = max(1, days * 24 - 2)
    outage_start = start_at + timedelta(hours=1 + rng.randrange(hours))
    outage = Outage(
        MANUFACTURERS[rng.randrange(len(MANUFACTURERS))],
        outage_start,
        outage_start + timedelta(hours=1),
    )
    return Chaos(
        profile,
        faults,
        message_copies=(2, 3),
        duplicate_share=1.0,
        crash_rate=0.03,
        outage=outage,
        rng=rng,
    )
