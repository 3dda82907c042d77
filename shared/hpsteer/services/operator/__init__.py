"""The operator's use cases behind the API: devices, steering, status, alerts, re-plans, audit.

Each module takes :class:`~hpsteer.runtime.bootstrap.Dependencies` and an
:class:`~hpsteer.services.operator.audit.Actor` (who asks, in which role) and returns the read
models of :mod:`hpsteer.domain.operator_views`; HTTP is :mod:`hpsteer.api`'s business. Every change
is one store transaction that also creates its audit event, then the event is appended to the
analytics ``audit_events`` table.
"""
