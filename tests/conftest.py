"""Session fixtures that start the emulators, available to every test by name.

Each lives in ``tests/support/<service>.py``: the emulator starts once per session, on the first
test that asks for it, and stops at the end. ``tests/support/tracing.py`` adds ``spans`` (the
spans a test records, in memory), which a module may override with its own.
"""

pytest_plugins = [
    "tests.support.firestore",
    "tests.support.pubsub",
    "tests.support.cloud_tasks",
    "tests.support.bigquery",
    "tests.support.secret_manager",
    "tests.support.stores",
    "tests.support.tracing",
]
