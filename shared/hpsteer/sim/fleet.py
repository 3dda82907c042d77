"""The simulated fleet: homes with 2R2C physics, a heat pump whose own controller follows the
lever the cloud sets, and the manufacturer's account, ids and credentials for each.

Promises:

- A :class:`Fleet` is built from a seed: the same seed, the same homes (archetype, perturbed
  building, outdoor climate, household settings, ids, tokens). Homes are dealt to the
  manufacturers in turn (``viessmann``, ``nibe_myuplink``, ``daikin_onecta``); each home is its
  own manufacturer account (``account_id`` = the home's id), as a household's account would be.
- Time is the caller's :class:`~hpsteer.ports.clock.SimulatedClock`. :meth:`Fleet.advance`
  moves it and steps every home's physics to the new instant; a request served by the simulated
  clouds first steps the home it touches to ``clock.now()`` (:meth:`Fleet.sync_home`), so reads
  are always consistent with the physics without stepping the whole fleet per request.
- **The lever.** Each home has one setpoint lever as its manufacturer exposes it: ViCare's comfort
  program temperature (°C), Onecta's room-temperature setpoint (°C) on a room-controlled unit,
  myUplink's heating offset (steps; the room setpoint of point 47398 stays the household's).
  The controller's target is the lever itself (°C), or the room setpoint + steps ·
  :data:`ROOM_K_PER_OFFSET_STEP` for myUplink — the same reading the adapters make.
  ``shown_lever`` is what the cloud reports, ``applied_lever`` what the controller runs on; they
  differ only while a command is applied late (then both stay old until it applies).
- Device faults (:mod:`hpsteer.sim.faults`): not applied (nothing changes), applied late (after
  ``apply_delay``), reboots (the lever returns to the household's own setting, a boost stops),
  user changes in the app (the lever and the household's own setting take the user's value,
  ``changed_by`` = ``"user"``), gateway offline (:meth:`Fleet.online`), stale telemetry (the
  cloud's readings and their timestamps freeze while physics goes on).
- **Surroundings.** The outdoor temperature is a daily cycle around each home's own base unless
  the fleet is given ``outdoor`` (the local runtime passes the bundled real weather of the price
  area); with ``price`` (EUR/MWh at an instant) each home's electricity cost is kept too, and
  with ``bill_price`` (EUR/kWh from the instant and that spot price: a household tariff's
  effective price, set before the run starts) what the household pays for it (``bill_eur``).
- **Truth for reports.** Each home keeps its electricity (and cost) so far, the kelvin-hours its
  air spent below the comfort floor (``comfort_min_c``, 1 K below the setpoint, or 1 K below the
  household's own lower setting if it chose one), and a **baseline
  twin**: the same building, weather and household setting under the heat pump's own control,
  never steered (:class:`Twin`), stepped alongside, so that savings and comfort are measured
  against what the home would have done, not against the planner's own prediction. Physics is
  stepped in chunks that never cross a quarter hour, so every chunk has one price.
- Thread-safe: one re-entrant lock guards every home (the real server serves in threads).
- **Physics per home, in plain floats.** :meth:`hpsteer.thermal.Plant.step` is vectorised over
  many states for the planner; the fleet steps one state per home thousands of times, where
  NumPy's per-call overhead on one-element arrays dominated. :class:`ScalarPlant` runs the same
  sub-steps with the same formulas and the same exact transition (Φ, Ψ of
  :func:`hpsteer.thermal.building.transition`, cached per step length) on Python floats; it agrees
  with ``Plant.step`` to rounding (tests/sim/test_fleet_physics_speed.py holds it to that).
"""

from __future__ import annotations

import math
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import numpy as np

from hpsteer.adapters.protocol import DeviceRef
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.secrets import SecretStore
from hpsteer.ports.store import DocumentStore
from hpsteer.sim.faults import FaultPlan, FaultSpec
from hpsteer.thermal import ARCHETYPES, Plant, SlotConditions, perturbed
from hpsteer.thermal.building import transition
from hpsteer.thermal.heat_pump import KELVIN_OFFSET

if TYPE_CHECKING:
    from hpsteer.adapters.credentials import CredentialStore

__all__ = [
    "MANUFACTURERS",
    "ROOM_K_PER_OFFSET_STEP",
    "Credentials",
    "Fleet",
    "Home",
    "Lever",
    "Reading",
    "ScalarPlant",
    "ScalarStep",
    "Twin",
]

MANUFACTURERS: Final = ("viessmann", "nibe_myuplink", "daikin_onecta")
ROOM_K_PER_OFFSET_STEP: Final = 1.0
"""Room kelvin per myUplink heating-offset step, as the adapter assumes (its params.py)."""
MAX_STEP: Final = timedelta(minutes=15)
"""Physics is stepped in chunks of at most this (outdoor temperature is held per chunk)."""
DHW_MIN_C: Final = 38.0
DHW_BOOST_TARGET_C: Final = 55.0
DHW_LOSS_K_PER_H: Final = 0.8
DHW_BOOST_K_PER_H: Final = 12.0
_W_PER_KW: Final = 1000.0
_KWH_PER_MWH: Final = 1000.0
_QUARTER: Final = timedelta(minutes=15)
_TRANSITIONS_KEPT: Final = 32
"""Step lengths whose transition a :class:`ScalarPlant` keeps (a fleet uses a handful)."""


@dataclass(frozen=True, slots=True)
class ScalarStep:
    """One home's state after a step and what the step cost (``Plant.step``'s, as floats)."""

    air_temp_c: float
    mass_temp_c: float
    heat_kwh: float
    electricity_kwh: float


class ScalarPlant:
    """One :class:`~hpsteer.thermal.Plant` stepped on Python floats (see the module docstring).

    The formulas are those of ``HeatingCurve``, ``HeatPump``, ``Controller``,
    ``RCModel.node_inputs_kw`` and ``Plant.step`` with no solar gain, the plant's own internal
    gains and a zero offset (what the fleet runs), written in the same order of operations.
    """

    __slots__ = (
        "_a_ao",
        "_a_mo",
        "_air_capacity",
        "_capacity_flow_slope",
        "_capacity_outdoor_slope",
        "_carnot_fraction",
        "_design_excess_k",
        "_design_heat_kw",
        "_design_span_k",
        "_emitter_exponent",
        "_gains_kw",
        "_heat_to_air",
        "_inverse_exponent",
        "_limit_offset_k",
        "_mass_capacity",
        "_max_flow_c",
        "_min_flow_c",
        "_min_lift_k",
        "_parallel_shift_k",
        "_rated_heat_kw",
        "_room_gain",
        "_substep_minutes",
        "_transitions",
        "plant",
    )

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        building, curve, pump = plant.building, plant.controller.curve, plant.heat_pump
        two_node = building.two_node
        self._a_ao = building.air_outdoor_conductance_w_per_k / _W_PER_KW
        self._a_mo = building.mass_outdoor_conductance_w_per_k / _W_PER_KW
        self._air_capacity = building.air_capacity_kwh_per_k
        self._mass_capacity = building.mass_capacity_kwh_per_k if two_node else None
        self._heat_to_air = building.heat_to_air_fraction
        self._gains_kw = plant.internal_gains_w / _W_PER_KW
        self._substep_minutes = plant.substep_minutes
        self._room_gain = plant.controller.room_gain_kw_per_k
        self._design_excess_k = curve.design_excess_k
        self._design_span_k = curve.design_room_temp_c - curve.heating_limit_offset_k
        self._design_span_k -= curve.design_outdoor_temp_c
        self._design_heat_kw = curve.design_heat_kw
        self._emitter_exponent = curve.emitter_exponent
        self._inverse_exponent = 1.0 / curve.emitter_exponent
        self._limit_offset_k = curve.heating_limit_offset_k
        self._parallel_shift_k = curve.parallel_shift_k
        self._min_flow_c = curve.min_flow_temp_c
        self._max_flow_c = curve.max_flow_temp_c
        self._rated_heat_kw = pump.rated_heat_kw
        self._carnot_fraction = pump.carnot_fraction
        self._min_lift_k = pump.min_lift_k
        self._capacity_outdoor_slope = pump.capacity_outdoor_slope_per_k
        self._capacity_flow_slope = pump.capacity_flow_slope_per_k
        self._transitions: dict[float, tuple[float, ...]] = {}

    def curve_flow_c(self, outdoor_temp_c: float, target_c: float) -> float:
        """``HeatingCurve.flow_temp_c``."""
        load = max(0.0, target_c - self._limit_offset_k - outdoor_temp_c)
        excess = self._design_excess_k * math.pow(
            load / self._design_span_k, self._inverse_exponent
        )
        flow = target_c + self._parallel_shift_k + excess
        return min(max(flow, self._min_flow_c), self._max_flow_c)

    def flow_for_heat_c(self, heat_kw: float, room_temp_c: float) -> float:
        """``HeatingCurve.flow_for_heat_c``: the flow the emitters need for this heat."""
        ratio = max(heat_kw, 0.0) / self._design_heat_kw
        return room_temp_c + self._design_excess_k * math.pow(ratio, self._inverse_exponent)

    def step(
        self,
        air_temp_c: float,
        mass_temp_c: float,
        *,
        outdoor_temp_c: float,
        target_c: float,
        duration_h: float,
    ) -> ScalarStep:
        """``Plant.step`` of one state over ``duration_h`` with the controller at ``target_c``."""
        n_sub = max(1, math.ceil(duration_h * 60.0 / self._substep_minutes - 1e-9))
        dt_h = duration_h / n_sub
        p_aa, p_am, p_ma, p_mm, s_aa, s_am, s_ma, s_mm = self._transition(dt_h)
        curve_flow = self.curve_flow_c(outdoor_temp_c, target_c)
        excess = max(0.0, curve_flow - target_c)
        feedforward = self._design_heat_kw * math.pow(
            excess / self._design_excess_k, self._emitter_exponent
        )
        capacity = self._capacity_kw(outdoor_temp_c, curve_flow)
        air, mass = air_temp_c, mass_temp_c
        heat_kwh = electricity_kwh = 0.0
        for _ in range(n_sub):
            heat = feedforward + self._room_gain * (target_c - air)
            heat = min(max(heat, 0.0), capacity)
            flow = self.flow_for_heat_c(heat, air)
            cop = (
                self._carnot_fraction
                * (flow + KELVIN_OFFSET)
                / max(flow - outdoor_temp_c, self._min_lift_k)
            )
            heat_kwh += heat * dt_h
            electricity_kwh += heat * dt_h / cop
            u_air = self._a_ao * outdoor_temp_c + self._heat_to_air * heat + self._gains_kw
            b_air = u_air / self._air_capacity
            if self._mass_capacity is None:
                air = p_aa * air + s_aa * b_air
                mass = air
                continue
            u_mass = self._a_mo * outdoor_temp_c + (1.0 - self._heat_to_air) * heat
            b_mass = u_mass / self._mass_capacity
            air, mass = (
                p_aa * air + p_am * mass + s_aa * b_air + s_am * b_mass,
                p_ma * air + p_mm * mass + s_ma * b_air + s_mm * b_mass,
            )
        return ScalarStep(air, mass, heat_kwh, electricity_kwh)

    def _capacity_kw(self, outdoor_temp_c: float, flow_temp_c: float) -> float:
        """``HeatPump.max_heat_kw``."""
        outdoor_factor = min(
            max(1.0 + self._capacity_outdoor_slope * (outdoor_temp_c + 7.0), 0.3), 1.6
        )
        flow_factor = min(max(1.0 - self._capacity_flow_slope * (flow_temp_c - 35.0), 0.5), 1.2)
        return self._rated_heat_kw * outdoor_factor * flow_factor

    def _transition(self, dt_h: float) -> tuple[float, ...]:
        """Φ and Ψ for ``dt_h`` as floats (row-major), kept for the last few step lengths."""
        found = self._transitions.get(dt_h)
        if found is None:
            if len(self._transitions) >= _TRANSITIONS_KEPT:
                self._transitions.clear()
            exact = transition(self.plant.building, dt_h)
            phi, psi = exact.phi.tolist(), exact.psi.tolist()
            if self._mass_capacity is None:
                found = (phi[0][0], 0.0, 0.0, 0.0, psi[0][0], 0.0, 0.0, 0.0)
            else:
                found = (*phi[0], *phi[1], *psi[0], *psi[1])
            self._transitions[dt_h] = found
        return found


@dataclass(frozen=True, slots=True)
class Lever:
    """The setpoint a manufacturer exposes for one home: its unit, range and step."""

    kind: str
    """``room_setpoint_c`` (ViCare, Onecta) or ``offset_steps`` (myUplink)."""
    minimum: float
    maximum: float
    step: float

    def snap(self, value: float) -> float:
        steps = math.floor((value - self.minimum) / self.step + 0.5)
        return round(min(self.maximum, max(self.minimum, self.minimum + steps * self.step)), 6)


LEVERS: Final[dict[str, Lever]] = {
    "viessmann": Lever("room_setpoint_c", 3.0, 37.0, 1.0),
    "nibe_myuplink": Lever("offset_steps", -10.0, 10.0, 1.0),
    "daikin_onecta": Lever("room_setpoint_c", 12.0, 30.0, 0.5),
}


@dataclass(frozen=True, slots=True)
class Reading:
    """What the manufacturer's cloud reports of a home's sensors, and when it sampled them."""

    at: datetime
    indoor_temp_c: float
    outdoor_temp_c: float
    supply_temp_c: float
    dhw_temp_c: float
    power_kw: float


@dataclass(frozen=True, slots=True)
class Credentials:
    """One account's OAuth client and its current refresh token (the fleet rotates it)."""

    manufacturer: str
    account_id: str
    client_id: str
    client_secret: str
    refresh_token: str


@dataclass
class Twin:
    """A home's baseline twin: never commanded, on the household's own setting throughout."""

    air_temp_c: float
    mass_temp_c: float
    electricity_kwh: float = 0.0
    cost_eur: float = 0.0
    bill_eur: float = 0.0
    kh_below: float = 0.0


@dataclass
class Home:
    home_id: str
    manufacturer: str
    account_id: str
    external_id: str
    archetype: str
    plant: Plant
    lever: Lever
    room_setpoint_c: float
    """The household's room setpoint (myUplink 47398; ViCare and Onecta: the lever's baseline)."""
    household_lever: float
    """The household's own lever setting: what a reboot restores."""
    shown_lever: float
    applied_lever: float
    outdoor_base_c: float
    air_temp_c: float
    mass_temp_c: float
    stepped_at: datetime
    reported: Reading
    dhw_temp_c: float = 48.0
    dhw_boost: bool = False
    heat_kw: float = 0.0
    power_kw: float = 0.0
    supply_temp_c: float = 30.0
    changed_by: str = "household"
    changed_at: datetime | None = None
    pending: list[tuple[datetime, float]] = field(default_factory=list)
    commands_received: int = 0
    reboots: int = 0
    comfort_min_c: float = 19.0
    """The comfort floor the household agreed to (the registered band's minimum)."""
    electricity_kwh: float = 0.0
    cost_eur: float = 0.0
    bill_eur: float = 0.0
    """The household's bill for the electricity so far (with the fleet's ``bill_price``)."""
    kh_below: float = 0.0
    """Kelvin-hours of indoor air below ``comfort_min_c`` so far."""
    twin: Twin | None = None
    _scalar_plant: ScalarPlant | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def target_c(self) -> float:
        """The room temperature the heat pump's own controller regulates to now."""
        return self._target_for(self.applied_lever)

    @property
    def household_target_c(self) -> float:
        """The room temperature the household's own setting asks for (the twin runs on it)."""
        return self._target_for(self.household_lever)

    def _target_for(self, lever_value: float) -> float:
        if self.lever.kind == "offset_steps":
            return self.room_setpoint_c + lever_value * ROOM_K_PER_OFFSET_STEP
        return lever_value

    def ref(self) -> DeviceRef:
        return DeviceRef(self.manufacturer, self.external_id, self.account_id, self.home_id)

    def scalar_plant(self) -> ScalarPlant:
        """:attr:`plant` as a :class:`ScalarPlant` (rebuilt if ``plant`` is replaced)."""
        cached = self._scalar_plant
        if cached is None or cached.plant is not self.plant:
            cached = self._scalar_plant = ScalarPlant(self.plant)
        return cached


def outdoor_temp_c(base_c: float, at: datetime) -> float:
    """A daily cycle around ``base_c``: coldest at 03:00 UTC, warmest at 15:00, ±4 K."""
    hours = at.hour + at.minute / 60.0 + at.second / 3600.0
    return base_c + 4.0 * math.cos(2.0 * math.pi * (hours - 15.0) / 24.0)


class Fleet:
    """Homes, their manufacturers' accounts and tokens, and the faults that hit them."""

    def __init__(
        self,
        clock: SimulatedClock,
        *,
        homes: int = 3,
        seed: int = 0,
        faults: FaultPlan | None = None,
        manufacturers: Iterable[str] = MANUFACTURERS,
        outdoor: Callable[[datetime], float] | None = None,
        price: Callable[[datetime], float] | None = None,
        bill_price: Callable[[datetime, float], float] | None = None,
    ) -> None:
        chosen = tuple(manufacturers)
        unknown = sorted(set(chosen) - set(MANUFACTURERS))
        if unknown or not chosen:
            raise ValueError(f"manufacturers must be among {MANUFACTURERS}, got {chosen}")
        if homes < 0:
            raise ValueError(f"homes must be >= 0, got {homes}")
        self.clock = clock
        self.seed = seed
        self.faults = faults if faults is not None else FaultPlan(seed=seed)
        self._outdoor = outdoor
        self._price = price
        self.bill_price = bill_price
        """EUR/kWh the household pays at an instant, given the spot price (EUR/MWh) then."""
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.homes: dict[str, Home] = {}
        self._by_key: dict[tuple[str, str], Home] = {}
        self._credentials: dict[tuple[str, str], Credentials] = {}
        for index in range(homes):
            home = self._make_home(index, chosen[index % len(chosen)])
            self.homes[home.home_id] = home
            self._by_key[(home.manufacturer, _lookup_key(home))] = home
            self._credentials[(home.manufacturer, home.account_id)] = Credentials(
                manufacturer=home.manufacturer,
                account_id=home.account_id,
                client_id=f"sim-{home.manufacturer}-client",
                client_secret=f"sim-{home.manufacturer}-secret",
                refresh_token=self.new_token("rt"),
            )

    def __iter__(self) -> Iterator[Home]:
        return iter(self.homes.values())

    def __len__(self) -> int:
        return len(self.homes)

    # -- building -------------------------------------------------------------------------

    def _make_home(self, index: int, manufacturer: str) -> Home:
        rng = self._rng
        names = sorted(ARCHETYPES)
        archetype = names[rng.randrange(len(names))]
        plant = perturbed(
            ARCHETYPES[archetype].plant, np.random.default_rng(self.seed * 100_003 + index), 0.1
        )
        lever = LEVERS[manufacturer]
        room_setpoint_c = float(rng.choice((20.0, 21.0, 21.0, 22.0)))
        household = 0.0 if lever.kind == "offset_steps" else room_setpoint_c
        home_id = f"home-{index:04d}"
        external_id = _external_id(manufacturer, index, self.seed)
        now = self.clock.now()
        base = round(rng.uniform(-1.0, 7.0), 1)  # above the -7 °C design point: not capacity-bound
        target = room_setpoint_c
        outdoor_now = self._outdoor(now) if self._outdoor else outdoor_temp_c(base, now)
        conditions = SlotConditions(duration_h=1.0, outdoor_temp_c=outdoor_now, setpoint_c=target)
        air, mass = plant.steady_state(conditions, 0.0)
        home = Home(
            home_id=home_id,
            manufacturer=manufacturer,
            account_id=home_id,
            external_id=external_id,
            archetype=archetype,
            plant=plant,
            lever=lever,
            room_setpoint_c=room_setpoint_c,
            household_lever=household,
            shown_lever=household,
            applied_lever=household,
            outdoor_base_c=base,
            air_temp_c=float(air),
            mass_temp_c=float(mass),
            stepped_at=now,
            reported=Reading(now, float(air), outdoor_now, 30.0, 48.0, 0.0),
            dhw_temp_c=round(rng.uniform(44.0, 50.0), 1),
            comfort_min_c=room_setpoint_c - 1.0,
        )
        self._step(home, now + timedelta(minutes=5), draw_events=False)
        home.stepped_at = now
        home.electricity_kwh = home.cost_eur = home.bill_eur = home.kh_below = 0.0
        home.twin = Twin(home.air_temp_c, home.mass_temp_c)
        home.reported = self._reading(home, now)
        return home

    def outdoor_at(self, home: Home, at: datetime) -> float:
        """The outdoor temperature at the home (the shared weather, or its own daily cycle)."""
        if self._outdoor is not None:
            return self._outdoor(at)
        return outdoor_temp_c(home.outdoor_base_c, at)

    def new_token(self, prefix: str) -> str:
        """A token from the fleet's seeded dice (reproducible runs, never a real secret)."""
        with self.lock:
            return f"sim-{prefix}-{self._rng.getrandbits(96):024x}"

    # -- lookups ----------------------------------------------------------------------------

    def home(self, home_id: str) -> Home:
        return self.homes[home_id]

    def find(self, manufacturer: str, key: str) -> Home | None:
        """A home by its manufacturer's lookup key (ViCare: inst/serial/dev; myUplink: the
        device id; Onecta: the gateway device id)."""
        return self._by_key.get((manufacturer, key))

    def device_refs(self, manufacturer: str | None = None) -> list[DeviceRef]:
        return [h.ref() for h in self if manufacturer is None or h.manufacturer == manufacturer]

    def credentials(self, manufacturer: str, account_id: str) -> Credentials | None:
        return self._credentials.get((manufacturer, account_id))

    def all_credentials(self) -> list[Credentials]:
        return list(self._credentials.values())

    def rotate(self, credentials: Credentials) -> Credentials:
        """A new refresh token for the account; the old one stops working."""
        with self.lock:
            rotated = Credentials(
                credentials.manufacturer,
                credentials.account_id,
                credentials.client_id,
                credentials.client_secret,
                self.new_token("rt"),
            )
            self._credentials[(credentials.manufacturer, credentials.account_id)] = rotated
            return rotated

    def seed_credentials(self, secrets: SecretStore, store: DocumentStore) -> CredentialStore:
        """Store what the adapters read (:mod:`hpsteer.adapters.credentials`): each
        manufacturer's app credentials (client id, and client secret where the client is
        confidential) as secrets under the names the clients read, a data key if the secrets
        hold none, and every account's refresh token, onboarded into ``store``. Returns the
        credential store used (another instance's view of the same credentials)."""
        from hpsteer.adapters.credentials import CredentialStore, ensure_data_key
        from hpsteer.adapters.daikin_onecta import client as onecta
        from hpsteer.adapters.nibe_myuplink import client as myuplink
        from hpsteer.adapters.viessmann import client as vicare

        app_secrets = {
            "viessmann": (vicare.client_id_secret_name(), None),
            "nibe_myuplink": (
                myuplink.client_id_secret_name(),
                myuplink.client_secret_secret_name(),
            ),
            "daikin_onecta": (onecta.client_id_secret_name(), onecta.client_secret_secret_name()),
        }
        ensure_data_key(secrets)
        credentials = CredentialStore(store, secrets, self.clock)
        seeded: set[str] = set()
        for creds in self.all_credentials():
            id_name, secret_name = app_secrets[creds.manufacturer]
            if creds.manufacturer not in seeded:  # one app per manufacturer (the sim's clients)
                seeded.add(creds.manufacturer)
                secrets.add_version(id_name, creds.client_id.encode())
                if secret_name is not None:  # ViCare's client is public: no secret
                    secrets.add_version(secret_name, creds.client_secret.encode())
            credentials.onboard(
                creds.manufacturer, creds.account_id, refresh_token=creds.refresh_token
            )
        return credentials

    # -- faults and state ---------------------------------------------------------------------

    def spec(self, home: Home) -> FaultSpec:
        return self.faults.spec_for(home.manufacturer, home.home_id)

    def online(self, home: Home) -> bool:
        return not self.spec(home).gateway_offline

    # -- time -----------------------------------------------------------------------------

    def advance(self, to: datetime) -> None:
        """Move the clock to ``to`` (never back) and step every home's physics to it."""
        self.clock.advance_to(to)
        now = self.clock.now()
        with self.lock:
            for home in self:
                self._step(home, now)

    def sync_home(self, home: Home) -> None:
        """Step one home to ``clock.now()`` (a request touching it calls this first)."""
        now = self.clock.now()
        if now > home.stepped_at:
            with self.lock:
                self._step(home, now)

    def _step(self, home: Home, to: datetime, *, draw_events: bool = True) -> None:
        while home.stepped_at < to:
            end = min(to, home.stepped_at + MAX_STEP, _next_quarter(home.stepped_at))
            due = [at for at, _ in home.pending if at <= end]
            if due:
                end = max(min(due), home.stepped_at)
            if draw_events:
                self._draw_events(home, end - home.stepped_at)
            if end > home.stepped_at:
                self._physics(home, end)
            home.stepped_at = end
            for at, value in [p for p in home.pending if p[0] <= end]:
                home.pending.remove((at, value))
                home.shown_lever = home.applied_lever = value
                home.changed_by, home.changed_at = "cloud", at
            if not self.spec(home).stale_telemetry:
                home.reported = self._reading(home, end)

    def _draw_events(self, home: Home, duration: timedelta) -> None:
        spec = self.spec(home)
        if self.faults.happens_within(spec.reboot_rate_per_day, duration):
            self.reboot(home.home_id)
        if self.faults.happens_within(spec.user_change_rate_per_day, duration):
            shift = spec.user_change_k * (1.0 if self.faults.chance(0.5) else -1.0)
            self.user_changes_setpoint(home.home_id, home.shown_lever + shift)

    def _physics(self, home: Home, end: datetime) -> None:
        duration_h = (end - home.stepped_at) / timedelta(hours=1)
        plant = home.scalar_plant()
        outdoor = self.outdoor_at(home, home.stepped_at)
        spot_eur_per_mwh = self._price(home.stepped_at) if self._price else 0.0
        price_eur_per_kwh = spot_eur_per_mwh / _KWH_PER_MWH
        bill_eur_per_kwh = (
            self.bill_price(home.stepped_at, spot_eur_per_mwh) if self.bill_price else 0.0
        )
        result = plant.step(
            home.air_temp_c,
            home.mass_temp_c,
            outdoor_temp_c=outdoor,
            target_c=home.target_c,
            duration_h=duration_h,
        )
        home.air_temp_c = result.air_temp_c
        home.mass_temp_c = result.mass_temp_c
        home.heat_kw = result.heat_kwh / duration_h
        home.power_kw = result.electricity_kwh / duration_h
        home.electricity_kwh += result.electricity_kwh
        home.cost_eur += result.electricity_kwh * price_eur_per_kwh
        home.bill_eur += result.electricity_kwh * bill_eur_per_kwh
        floor = min(home.comfort_min_c, home.household_target_c - 1.0)  # a household's own
        home.kh_below += max(0.0, floor - home.air_temp_c) * duration_h  # cooler choice is no harm
        twin = home.twin
        if twin is not None:
            shadow = plant.step(
                twin.air_temp_c,
                twin.mass_temp_c,
                outdoor_temp_c=outdoor,
                target_c=home.household_target_c,
                duration_h=duration_h,
            )
            twin.air_temp_c, twin.mass_temp_c = shadow.air_temp_c, shadow.mass_temp_c
            twin.electricity_kwh += shadow.electricity_kwh
            twin.cost_eur += shadow.electricity_kwh * price_eur_per_kwh
            twin.bill_eur += shadow.electricity_kwh * bill_eur_per_kwh
            twin.kh_below += max(0.0, floor - shadow.air_temp_c) * duration_h
        home.supply_temp_c = plant.flow_for_heat_c(home.heat_kw, home.air_temp_c)
        if home.dhw_boost:
            home.dhw_temp_c = min(
                DHW_BOOST_TARGET_C, home.dhw_temp_c + DHW_BOOST_K_PER_H * duration_h
            )
            if home.dhw_temp_c >= DHW_BOOST_TARGET_C:
                home.dhw_boost = False
        else:
            home.dhw_temp_c = max(DHW_MIN_C, home.dhw_temp_c - DHW_LOSS_K_PER_H * duration_h)

    def _reading(self, home: Home, at: datetime) -> Reading:
        return Reading(
            at=at,
            indoor_temp_c=round(home.air_temp_c, 1),
            outdoor_temp_c=round(self.outdoor_at(home, at), 1),
            supply_temp_c=round(home.supply_temp_c, 1),
            dhw_temp_c=round(home.dhw_temp_c, 1),
            power_kw=round(home.power_kw, 3),
        )

    # -- what happens to a device ---------------------------------------------------------------

    def command(self, home: Home, lever_value: float) -> None:
        """The cloud accepted a new lever value: apply it now, late, or never (faults)."""
        with self.lock:
            self.sync_home(home)
            home.commands_received += 1
            spec = self.spec(home)
            value = home.lever.snap(lever_value)
            if self.faults.chance(spec.not_applied_rate):
                return
            if self.faults.chance(spec.applied_late_rate):
                home.pending.append((self.clock.now() + spec.apply_delay, value))
                return
            home.shown_lever = home.applied_lever = value
            home.changed_by, home.changed_at = "cloud", self.clock.now()

    def boost_dhw(self, home: Home) -> None:
        """The cloud accepted a one-time hot-water charge (not-applied faults apply too)."""
        with self.lock:
            self.sync_home(home)
            home.commands_received += 1
            if self.faults.chance(self.spec(home).not_applied_rate):
                return
            home.dhw_boost = True

    def reboot(self, home_id: str) -> None:
        """The device restarts: steered values are lost, the household's own setting returns."""
        with self.lock:
            home = self.homes[home_id]
            home.pending.clear()
            home.shown_lever = home.applied_lever = home.household_lever
            home.dhw_boost = False
            home.reboots += 1
            home.changed_by, home.changed_at = "reboot", home.stepped_at

    def user_changes_setpoint(self, home_id: str, lever_value: float) -> None:
        """The household sets the lever in the manufacturer's app (their new own setting)."""
        with self.lock:
            home = self.homes[home_id]
            value = home.lever.snap(lever_value)
            home.pending.clear()
            home.household_lever = home.shown_lever = home.applied_lever = value
            if home.lever.kind == "room_setpoint_c":
                home.room_setpoint_c = value
            home.changed_by, home.changed_at = "user", home.stepped_at


def _next_quarter(at: datetime) -> datetime:
    """The first quarter-hour boundary after ``at`` (price slots start on them)."""
    into = timedelta(minutes=at.minute % 15, seconds=at.second, microseconds=at.microsecond)
    return at - into + _QUARTER


def _external_id(manufacturer: str, index: int, seed: int) -> str:
    if manufacturer == "viessmann":
        return f"{1_000_000 + index}/75713815731{index:05d}/0"
    if manufacturer == "nibe_myuplink":
        return f"sim-system-{index:04d}/sim-f730-{seed}-{index:04d}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hpsteer-sim/{seed}/{index}"))


def _lookup_key(home: Home) -> str:
    if home.manufacturer == "nibe_myuplink":
        return home.external_id.split("/")[1]
    return home.external_id
