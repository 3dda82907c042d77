"""Wiring: bootstrap (production vs local dependencies) and the ``hpsteer`` command line."""
