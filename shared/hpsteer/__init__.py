"""hpsteer: steer fleets of residential heat pumps by day-ahead electricity prices."""

__version__ = "0.1.0"
__all__ = ["__version__"]
