"""Which Cloud Function entry point each Pub/Sub topic triggers: the cloud's wiring, as data.

:data:`TRIGGERS` is what terraform binds with Eventarc triggers and what the local runtime
subscribes on its bus. :func:`load_entry_point` loads the entry point from the function's own
``functions/<name>/main.py`` (the very file Cloud Functions deploys), so a message in the
simulation reaches exactly the code the cloud runs: the CloudEvent decoding, the age limit,
the error mapping of :func:`hpsteer.runtime.entrypoint.run_pubsub`, and the service.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudevents.http import CloudEvent

from hpsteer.domain.messages import Topic

__all__ = ["TRIGGERS", "Trigger", "functions_dir", "load_entry_point"]

CloudEventEntry = Callable[[CloudEvent], None]


@dataclass(frozen=True, slots=True)
class Trigger:
    topic: Topic
    function: str
    """The folder under ``functions/``."""
    entry_point: str


TRIGGERS: tuple[Trigger, ...] = (
    Trigger(Topic.PRICE_INGEST_REQUESTS, "ingest_prices", "ingest_prices"),
    Trigger(Topic.WEATHER_INGEST_REQUESTS, "ingest_weather", "ingest_weather"),
    Trigger(Topic.SPOT_PRICE_UPDATES, "optimize", "optimize_trigger"),
    Trigger(Topic.WEATHER_UPDATES, "optimize", "optimize_trigger"),
    Trigger(Topic.REPLAN_REQUESTS, "optimize", "optimize_trigger"),
    Trigger(Topic.OPTIMIZE_REQUESTS, "optimize", "optimize_shard"),
    Trigger(Topic.RECONCILE_REQUESTS, "reconcile", "reconcile"),
    Trigger(Topic.DEVICE_TELEMETRY, "ingest_telemetry", "ingest_telemetry"),
    Trigger(Topic.COMMAND_SWEEP_REQUESTS, "dispatch", "sweep_commands"),
)


def functions_dir() -> Path:
    """The repository's ``functions/`` folder (the package is installed from ``shared/``)."""
    return Path(__file__).resolve().parents[4] / "functions"


def load_entry_point(function: str, entry_point: str) -> CloudEventEntry:
    """The ``entry_point`` of ``functions/<function>/main.py``, its module loaded once."""
    name = f"hpsteer_function_{function}"
    module = sys.modules.get(name)
    if module is None:
        path = functions_dir() / function / "main.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"no Cloud Function source at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    entry = getattr(module, entry_point, None)
    if not callable(entry):
        raise AttributeError(f"functions/{function}/main.py has no entry point {entry_point}")
    return entry  # type: ignore[no-any-return]
