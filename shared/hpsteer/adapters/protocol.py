"""The manufacturer adapter protocol (the architecture document's OEMAdapter, made concrete).

An adapter speaks one manufacturer's cloud API for the devices of one or more accounts. It
translates hpsteer's :class:`~hpsteer.domain.actions.GenericAction` into the manufacturer's
payload, validates it against what the device declares, sends it, and reads the device's state
back in hpsteer's terms. Errors are translated at this boundary, never leaked as httpx errors:

- :class:`~hpsteer.errors.OemUnavailable` — the manufacturer's cloud failed (5xx, timeout,
  non-JSON gateway page): counts against the manufacturer's circuit breaker;
- :class:`~hpsteer.errors.OemRateLimited` — a limit is spent, with ``retry_at`` when known;
- :class:`~hpsteer.errors.DeviceOffline` — this device or its gateway is offline: a device
  fault, which must never trip the breaker;
- :class:`~hpsteer.errors.CommandRejected` — the manufacturer refused the command as invalid;
- :class:`~hpsteer.errors.CredentialsInvalid` — the account's credentials were refused.

Adapters are synchronous (httpx.Client) and thread-safe: an instance may serve several requests
at once, and reconcile polls a page's devices on several threads; the local runtime drives them
from its own loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.ports.clock import Clock
from hpsteer.ports.secrets import SecretStore
from hpsteer.ports.store import DocumentStore

if TYPE_CHECKING:
    from hpsteer.adapters.baseline import BaselineBook
    from hpsteer.adapters.credentials import CredentialStore

__all__ = [
    "FOUND_MODE",
    "AdapterContext",
    "AdapterFactory",
    "Capabilities",
    "CommandResult",
    "DeviceRef",
    "DeviceState",
    "ManufacturerAdapter",
    "RateLimitConfig",
    "RateWindow",
    "ValidationResult",
]


FOUND_MODE: Final = "found_mode"
"""The payload key of the mode a translation found the device in (``None``: none of ours: the
household, or its own control, set it; the key is absent where nothing was read, e.g. a
hot-water boost)."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A heat pump as its manufacturer knows it, and whose credentials reach it."""

    manufacturer: str
    external_id: str
    """The manufacturer's id; composite ids (ViCare installation/gateway/device) joined by '/'."""
    account_id: str
    device_id: str = ""
    """hpsteer's own device id, for logs (empty when unknown)."""
    baseline_epoch: str | None = field(default=None, compare=False)
    """When the device's baselines were last forgotten, from its document's
    ``baseline_forgotten_at`` (``""``: never; ``None``: not built from the device document):
    baselines kept in memory under another epoch are read again
    (:mod:`hpsteer.adapters.baseline`). Not part of the device's identity."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    model: str
    actions: frozenset[GenericAction]
    setpoint_offset_range_k: tuple[float, float] = (-2.0, 2.0)
    """The room-setpoint shift the device accepts (its own steps may be coarser)."""
    notes: str = ""


@dataclass(frozen=True, slots=True)
class RateWindow:
    """At most ``limit`` calls per ``window``; exceeding it blocks for ``block_for`` if set."""

    limit: int
    window: timedelta
    block_for: timedelta | None = None


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Every window the manufacturer imposes at once, per account, and the share of each
    window reserved for reads (polling) so that commands never starve them (and vice versa)."""

    windows: tuple[RateWindow, ...]
    read_share: float = 0.3
    per: str = "account"
    calls_per_state_read: int = 1
    """API calls one ``get_device_state`` makes (myUplink: the device, then its points)."""


@dataclass(frozen=True, slots=True)
class ValidationResult:
    valid: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The manufacturer accepted the request (not: the device applied it; that is verified)."""

    accepted_at: datetime
    manufacturer_reference: str | None = None
    response: Mapping[str, Any] = field(default_factory=dict)
    """A small, secret-free excerpt of the response, for the command's event detail."""


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the manufacturer reports now, in hpsteer's terms (None: not reported)."""

    device: DeviceRef
    observed_at: datetime
    online: bool
    mode: Mode | None = None
    setpoint_offset_k: float | None = None
    room_setpoint_c: float | None = None
    indoor_temp_c: float | None = None
    outdoor_temp_c: float | None = None
    supply_temp_c: float | None = None
    dhw_temp_c: float | None = None
    power_kw: float | None = None
    changed_by_user: bool | None = None
    """True when the manufacturer shows the last change came from the household (if it can)."""


@runtime_checkable
class ManufacturerAdapter(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def rate_limits(self) -> RateLimitConfig: ...

    def capabilities(self, device: DeviceRef) -> Capabilities: ...

    def translate_generic_command(self, action: GenericAction, device: DeviceRef) -> dict[str, Any]:
        """The manufacturer payload of ``action``. For a mode, it also tells under
        :data:`FOUND_MODE` which of our modes the device's setting was in, as the translation
        read it (its value, or ``None``: a setting none of our modes makes)."""
        ...

    def validate_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> ValidationResult: ...

    def send_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> CommandResult: ...

    def get_device_state(self, device: DeviceRef) -> DeviceState: ...

    def forget_baseline(self, device: DeviceRef) -> None:
        """Forget the household's own setting learnt for ``device``: it is learnt again from the
        device at the next command (after the household changed it, e.g. an override)."""
        ...


_CONTEXT_LOCK = threading.Lock()


@dataclass(frozen=True)
class AdapterContext:
    """What a factory needs to build an adapter: credentials, time, and where the API is."""

    secrets: SecretStore
    clock: Clock
    base_urls: Mapping[str, str] = field(default_factory=dict)
    """Overrides per API (e.g. the simulated fleet's address); empty: the real endpoints."""
    transport: Any = None
    """An httpx transport to use (tests: MockTransport; the local runtime: the fleet's ASGI app)."""
    store: DocumentStore | None = None
    """Where shared adapter state lives (the households' baselines and credentials); None: in
    memory only."""
    credentials: CredentialStore | None = None
    """The households' credentials; None: one over ``store`` and ``secrets``, built on first use
    and shared by every adapter of this context (so each secret is read once per instance)."""
    _built_credentials: list[CredentialStore] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def credential_store(self) -> CredentialStore:
        """The :class:`~hpsteer.adapters.credentials.CredentialStore` adapters built from this
        context share (without a ``store``: over an empty in-memory store)."""
        if self.credentials is not None:
            return self.credentials
        with _CONTEXT_LOCK:
            if not self._built_credentials:
                from hpsteer.adapters.credentials import CredentialStore

                store = self.store
                if store is None:
                    from hpsteer.backends.local.store import LocalDocumentStore

                    store = LocalDocumentStore(clock=self.clock)
                self._built_credentials.append(CredentialStore(store, self.secrets, self.clock))
            return self._built_credentials[0]

    def baselines(self, manufacturer: str) -> BaselineBook:
        """The baseline book adapters built from this context share."""
        from hpsteer.adapters.baseline import MemoryBaselineBook, StoreBaselineBook

        if self.store is None:
            return MemoryBaselineBook()
        return StoreBaselineBook(self.store, manufacturer, self.clock)


AdapterFactory = Callable[[AdapterContext], ManufacturerAdapter]
