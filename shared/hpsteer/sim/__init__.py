"""The simulated fleet: homes with 2R2C physics behind emulations of the manufacturers' clouds.

:class:`~hpsteer.sim.fleet.Fleet` holds the homes and their accounts, :class:`~hpsteer.sim.app.
SimApp` serves ViCare's, myUplink's and Onecta's API paths and token endpoints over it,
:class:`~hpsteer.sim.faults.FaultPlan` injects faults per manufacturer and device from a seed;
reach it in-process with :class:`~hpsteer.sim.transport.SimTransport` or over HTTP on 127.0.0.1
with :class:`~hpsteer.sim.serve.SimServer` (``hpsteer sim serve``).
"""

from hpsteer.sim.app import Request, Response, SimApp
from hpsteer.sim.faults import FaultKind, FaultPlan, FaultSpec
from hpsteer.sim.fleet import MANUFACTURERS, Fleet, Home
from hpsteer.sim.transport import SimTransport

__all__ = [
    "MANUFACTURERS",
    "FaultKind",
    "FaultPlan",
    "FaultSpec",
    "Fleet",
    "Home",
    "Request",
    "Response",
    "SimApp",
    "SimTransport",
]
