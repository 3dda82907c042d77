"""Alerts for an operator: list and filter, read one, acknowledge.

Alerts are raised by the services (:mod:`hpsteer.services.alerts`); reconciliation resolves the
ones it raised (``resolved_at``). An operator acknowledges: ``acknowledged_at``, ``acknowledged_by``
and an optional note, with the audit event ``alert-{alert_id}-acknowledged`` in the same
transaction. Acknowledging is idempotent: the second time changes nothing and records nothing.

A list is one page of ``alerts`` in id order, filtered in the store by device, kind and severity
(equalities: Firestore's automatic indexes serve them, no composite index); the state filter
(``open``, ``acknowledged``, ``resolved``, ``unresolved``, ``all``) applies to the page, so a page
may hold fewer than ``page_size`` alerts and still have a next page.
"""

from __future__ import annotations

from collections.abc import Sequence

from hpsteer.domain.audit import AuditEvent
from hpsteer.domain.operator_requests import AlertListQuery, AlertStateFilter
from hpsteer.domain.operator_views import AlertsPage, AlertView
from hpsteer.domain.roles import Operation
from hpsteer.errors import InvalidInput
from hpsteer.ports.store import Filter, Page, Transaction
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.alerts import alert_path
from hpsteer.services.operator.audit import Actor, export_audit, stage_audit
from hpsteer.services.operator.errors import Refused, UnknownTarget
from hpsteer.services.operator.views import alert_view

__all__ = ["acknowledge_alert", "device_alerts", "get_alert", "list_alerts"]

ALERTS = "alerts"


def _page(deps: Dependencies, filters: Sequence[Filter], limit: int, cursor: str | None) -> Page:
    try:
        return deps.store.query(ALERTS, filters, limit=limit, cursor=cursor)
    except InvalidInput as err:
        raise Refused(str(err), code="invalid_page_token", field="page_token") from None


def _wanted(state: AlertStateFilter, view: AlertView) -> bool:
    if state == "all":
        return True
    if state == "unresolved":
        return view.state != "resolved"
    return view.state == state


def list_alerts(deps: Dependencies, query: AlertListQuery) -> AlertsPage:
    filters = []
    if query.device_id is not None:
        filters.append(Filter("device_id", "==", query.device_id))
    if query.kind is not None:
        filters.append(Filter("kind", "==", query.kind))
    if query.severity is not None:
        filters.append(Filter("severity", "==", query.severity.value))
    page = _page(deps, filters, query.page_size, query.page_token)
    views = [alert_view(d.id, d.data) for d in page.documents]
    return AlertsPage(
        alerts=[v for v in views if _wanted(query.state, v)], next_page_token=page.next_cursor
    )


def device_alerts(deps: Dependencies, device_id: str, limit: int = 50) -> list[AlertView]:
    """The device's unresolved alerts (the first ``limit`` of its alerts, in id order)."""
    query = AlertListQuery(device_id=device_id, state="unresolved", page_size=limit)
    return list_alerts(deps, query).alerts


def get_alert(deps: Dependencies, alert_id: str) -> AlertView:
    snapshot = deps.store.get(alert_path(alert_id))
    if snapshot is None:
        raise UnknownTarget(f"no alert {alert_id}", code="unknown_alert")
    return alert_view(alert_id, snapshot.data)


def acknowledge_alert(
    deps: Dependencies, actor: Actor, alert_id: str, note: str | None
) -> AlertView:
    now = deps.clock.now()
    path = alert_path(alert_id)
    staged: list[AuditEvent] = []

    def run(tx: Transaction) -> AlertView:
        staged.clear()
        snapshot = tx.get(path)
        if snapshot is None:
            raise UnknownTarget(f"no alert {alert_id}", code="unknown_alert")
        before = alert_view(alert_id, snapshot.data)
        if snapshot.data.get("acknowledged_at") is not None:
            return before
        changes = {
            "acknowledged_at": now,
            "acknowledged_by": actor.email,
            "acknowledgement_note": note,
        }
        after = alert_view(alert_id, {**snapshot.data, **changes})
        event = AuditEvent(
            audit_id=f"alert-{alert_id}-acknowledged",
            occurred_at=now,
            actor=actor.email,
            actor_role=actor.role,
            operation=Operation.ACKNOWLEDGE_ALERT,
            target_type="alert",
            target_id=alert_id,
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
            context={"note": note} if note else {},
        )
        tx.update(path, changes)
        stage_audit(tx, event)
        staged.append(event)
        return after

    view = deps.store.run_transaction(run)
    export_audit(deps, staged)
    return view
