"""Ask optimize for a re-plan: one :class:`~hpsteer.domain.messages.ReplanRequest` on
``replan-requests``, with the attributes optimize's trigger and the subscriptions read
(``message_type``, and ``device_id`` or ``area``).

Published by the operator API (a person's request, a comfort or tariff change), by
reconciliation (a household override) and by telemetry ingestion (the home left the plan's
predicted temperatures: :mod:`hpsteer.domain.plan_track`). A duplicate costs one extra plan at
most: optimize derives a plan's id from its inputs, so the same inputs give the same plan.
"""

from __future__ import annotations

from hpsteer.domain.messages import ReplanRequest, Topic
from hpsteer.messaging.envelope import encode_json_message
from hpsteer.ports.bus import MessageBus

__all__ = ["publish_replan_request"]


def publish_replan_request(bus: MessageBus, request: ReplanRequest) -> str:
    """Put ``request`` on ``replan-requests``; return the bus's message id."""
    attributes = {"message_type": "ReplanRequest"}
    if request.device_id is not None:
        attributes["device_id"] = request.device_id
    if request.area is not None:
        attributes["area"] = request.area.value
    return bus.publish(
        Topic.REPLAN_REQUESTS.value, encode_json_message(request), attributes=attributes
    )
