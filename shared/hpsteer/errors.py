"""Errors of hpsteer, split by what the caller should do about them.

::

    HpsteerError
    ├── TransientError            try again later: the same input may succeed
    │   ├── StoreUnavailable          the document store did not answer
    │   ├── BusUnavailable            the message bus did not answer
    │   ├── TaskQueueUnavailable      the task queue did not answer
    │   ├── AnalyticsUnavailable      the analytics store did not answer
    │   ├── SecretsUnavailable        the secret store did not answer
    │   ├── ConcurrencyConflict       someone else wrote first; re-read and decide again
    │   │   └── PreconditionFailed    an update's precondition no longer holds
    │   ├── ProviderUnavailable       a price or weather provider failed, timed out or throttled
    │   ├── OemUnavailable            a manufacturer's API failed or timed out
    │   │   └── OemRateLimited        a manufacturer limit or our budget: not before retry_at
    │   ├── DeviceOffline             one device or its gateway is offline (a device fault: it
    │   │                             never trips the manufacturer's circuit breaker)
    │   └── CircuitOpen               a manufacturer's circuit breaker is open
    └── PermanentError            the same input will fail again: record why, do not retry
        ├── InvalidInput              malformed data from outside
        │   ├── MalformedMessage          not JSON, wrong schema version, missing fields
        │   ├── InvalidDocumentPath       a path that is not collection/doc[/collection/doc…]
    │   ├── FeedRejected              a provider's payload that is malformed or fails validation
        │   ├── NaiveDatetime             a datetime without a time zone
        │   └── InvalidPayload            a command or payload that breaks a rule
        ├── NotFound                  the thing named does not exist
        │   ├── DocumentNotFound
        │   ├── UnknownDevice
        │   ├── SecretNotFound
        │   └── UnknownQueue
        ├── AlreadyExists             a create() of something that exists
        │   ├── DocumentAlreadyExists
        │   └── TaskAlreadyExists         Cloud Tasks' ALREADY_EXISTS for a named task
        ├── CommandRejected           the manufacturer refused a command as invalid for the device
        ├── CredentialsInvalid        the manufacturer refused our credentials; a person must act
        ├── IllegalTransition         a command lifecycle transition the table forbids
        └── InfeasiblePlan            no plan satisfies the hard constraints

Function entry points map the two branches: a ``PermanentError`` is logged once and the message
acknowledged (redelivery cannot help), a ``TransientError`` escapes so that Pub/Sub or Cloud Tasks
deliver again. Backends translate their client libraries' exceptions into these at the boundary
(``raise StoreUnavailable(...) from err``); nothing above the backends sees ``google.*`` errors.

Messages never contain secrets: callers pass names, ids and reasons, not credentials.
"""

from __future__ import annotations

from datetime import datetime


class HpsteerError(Exception):
    """Base of every error hpsteer raises on purpose."""


class TransientError(HpsteerError):
    """The operation may succeed if repeated later."""


class PermanentError(HpsteerError):
    """The operation will fail again with the same input."""


class StoreUnavailable(TransientError):
    pass


class BusUnavailable(TransientError):
    pass


class TaskQueueUnavailable(TransientError):
    pass


class AnalyticsUnavailable(TransientError):
    pass


class SecretsUnavailable(TransientError):
    pass


class ConcurrencyConflict(TransientError):
    pass


class PreconditionFailed(ConcurrencyConflict):
    pass


class ProviderUnavailable(TransientError):
    pass


class OemUnavailable(TransientError):
    pass


class OemRateLimited(OemUnavailable):
    """A manufacturer's limit (or our budget for it) is spent; ``retry_at`` says when to try."""

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class DeviceOffline(TransientError):
    """One device (or its gateway) does not answer; the manufacturer's cloud does."""


class CircuitOpen(TransientError):
    """A manufacturer's breaker is open; ``retry_at`` says when it will half-open."""

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class InvalidInput(PermanentError):
    pass


class MalformedMessage(InvalidInput):
    pass


class InvalidDocumentPath(InvalidInput):
    pass


class NaiveDatetime(InvalidInput):
    pass


class FeedRejected(InvalidInput):
    """A provider's feed refused as a whole; the message names the slot (if any) and the reason."""


class InvalidPayload(InvalidInput):
    pass


class NotFound(PermanentError):
    pass


class DocumentNotFound(NotFound):
    pass


class UnknownDevice(NotFound):
    pass


class SecretNotFound(NotFound):
    pass


class UnknownQueue(NotFound):
    pass


class AlreadyExists(PermanentError):
    pass


class DocumentAlreadyExists(AlreadyExists):
    pass


class TaskAlreadyExists(AlreadyExists):
    pass


class CommandRejected(PermanentError):
    pass


class CredentialsInvalid(PermanentError):
    pass


class IllegalTransition(PermanentError):
    pass


class InfeasiblePlan(PermanentError):
    pass
