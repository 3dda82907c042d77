"""Recheck: one device reconciled again, a minute or so after a run could not read it.

A reconcile run whose read of a device failed in a way a minute may mend queues a recheck for it
(:mod:`hpsteer.services.recheck_tasks`: when, which failures, the queue, the name). Cloud Tasks
delivers it to the ``recheck`` function (``functions/reconcile/main.py``), whose handler is
:func:`handle_recheck`:

1. The body is a :class:`~hpsteer.domain.messages.RecheckTask` (the device, the run's tick); one
   that is not is logged and answered 200 (``malformed``): no retry makes it readable.
2. A recheck delivered once the next run's tick has come (a retried or late delivery) does
   nothing (``superseded``): that run judges the device itself. A device whose document is gone
   is ``unknown_device``.
3. Otherwise the device is reconciled exactly as the run would have
   (:func:`~hpsteer.services.reconcile.reconcile_device`, on the document as it is now, judged
   now, for the run's tick): fresh telemetry that arrived meanwhile is used without a read;
   otherwise one read, paid unit by unit from the read share (the run's booked poll was spent
   by the read that failed) and admitted by the manufacturer's breaker. Its poll is stored and
   appended to the history as the run's would be
   (:func:`~hpsteer.services.reconcile.record_polls`).
4. The answer is 200 whatever the device showed (``judged``). A read that failed again in a way a
   minute may mend is answered 503 with ``Retry-After`` (``retry``): when the failure says a read
   may pass, at least :data:`~hpsteer.services.recheck_tasks.RECHECK_DELAY` later, so Cloud Tasks
   delivers the same task again then (its retries, ``RECHECK_RETRY``, bound how often), but only
   while that is within half an interval of the run's tick and the queue has an attempt left;
   otherwise 200 (``not_judged``): the next run comes. An exception (a store that failed) is a
   5xx, and Cloud Tasks retries it too.

Idempotent as a redelivered page is: what a delivery did (a remediation open, an override in
force, an alert raised, the command and its task) is on the device's documents, and a second
delivery finds it there; the remediation's command and task are named by the run's tick, the
same names a successful read at the run itself would have used.

This module never imports the planner, and neither does the function.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from hpsteer.adapters.gateway import ManufacturerGateway
from hpsteer.domain.messages import RecheckTask
from hpsteer.errors import PermanentError
from hpsteer.observability.logging import log_context
from hpsteer.observability.metrics import Metrics, metrics
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.dispatch import Reply, TaskDelivery, gateway_for
from hpsteer.services.paths import device_path
from hpsteer.services.recheck_tasks import RECHECK_RETRY, recheck_at
from hpsteer.services.reconcile import reconcile_context, reconcile_device, record_polls

__all__ = ["handle_recheck"]

_log = logging.getLogger(__name__)


def handle_recheck(
    delivery: TaskDelivery,
    deps: Dependencies,
    *,
    gateway: ManufacturerGateway | None = None,
    counters: Metrics = metrics,
) -> Reply:
    """Reconcile the task's device again for its run (module docstring)."""
    try:
        task = RecheckTask.parse_json(delivery.body)
    except PermanentError as err:
        _log.error("dropped a task that is not a recheck: %s", err)
        return Reply(200, "malformed", detail={"error": str(err)})
    interval = timedelta(minutes=deps.settings.reconcile_interval_minutes)
    if deps.clock.now() >= task.tick + interval:
        _log.info(
            "recheck of %s for the run of %s superseded by the next run",
            task.device_id,
            task.tick.isoformat(),
        )
        return Reply(200, "superseded")
    with log_context(device_id=task.device_id):
        document = deps.store.get(device_path(task.device_id))
        if document is None:
            _log.warning("recheck of %s: no such device", task.device_id)
            return Reply(200, "unknown_device")
        ctx = reconcile_context(
            deps, task.tick, gateway=gateway or gateway_for(deps), counters=counters
        )
        try:
            outcome = reconcile_device(ctx, document)
        finally:
            record_polls(ctx)
    detail = {"device_id": task.device_id, "actions": list(outcome.actions)}
    if outcome.error is None:
        return Reply(200, "judged", detail=detail)
    detail["error"] = outcome.error
    now = deps.clock.now()
    last = delivery.retry_count + 1 >= RECHECK_RETRY.max_attempts
    again = None if last else recheck_at(outcome.error, outcome.retry_at, now, task.tick, interval)
    if again is None:
        _log.info(
            "recheck of %s: not judged (%s), left to the next run", task.device_id, outcome.error
        )
        return Reply(200, "not_judged", detail=detail)
    wait_s = max(1, math.ceil((again - now).total_seconds()))
    return Reply(503, "retry", retry_after_s=wait_s, detail=detail)
