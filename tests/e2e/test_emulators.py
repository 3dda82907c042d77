"""The package starts and stops the official emulators itself (``hpsteer simulate --backend
emulators``): real clients work against the yielded host, nothing of the emulator outlives the
block, the environment is left alone, and a missing ``gcloud`` is a one-line
:class:`EmulatorUnavailable`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from hpsteer.runtime.emulators import (
    GCLOUD_MISSING,
    EmulatorUnavailable,
    firestore_emulator,
    port_open,
    pubsub_emulator,
)
from tests.support.emulator import available

PROJECT = "demo-hpsteer-emulators"

EmulatorManager = Callable[[str], AbstractContextManager[str]]


def _port(host: str) -> int:
    return int(host.rsplit(":", 1)[1])


def _live_processes_mentioning(port: int) -> set[int]:
    """Pids of running (not zombie) processes whose command line names ``port``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state != "Z" and any(
            arg.endswith(f":{port}") or arg == f"--port={port}" for arg in argv
        ):
            found.add(int(entry.name))
    return found


def _still_alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _eventually(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class _Running:
    """What was running inside the block: the port and the emulator's processes (launcher and
    Java child)."""

    def __init__(self, host: str) -> None:
        self.port = _port(host)
        self.pids = _live_processes_mentioning(self.port)

    def assert_gone(self) -> None:
        assert _eventually(lambda: not port_open(self.port)), f"port {self.port} still open"
        assert _eventually(lambda: not _still_alive(self.pids)), (
            f"left running: {_still_alive(self.pids)}"
        )


@pytest.mark.emulator
def test_the_firestore_emulator_serves_a_real_client_and_stops_with_its_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.cloud import firestore

    before = dict(os.environ)
    with available(firestore_emulator(PROJECT)) as host:
        assert dict(os.environ) == before, "the emulator must leave the environment to the caller"
        running = _Running(host)
        assert len(running.pids) >= 2, "gcloud and its Java child"
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
        client = firestore.Client(project=PROJECT)
        try:
            document = client.collection("homes").document("home-1")
            document.set({"setpoint_c": 21.5})
            assert document.get().to_dict() == {"setpoint_c": 21.5}
        finally:
            client.close()  # type: ignore[no-untyped-call]
    running.assert_gone()


@pytest.mark.emulator
def test_the_pubsub_emulator_serves_a_real_publisher_and_stops_with_its_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1

    before = dict(os.environ)
    with available(pubsub_emulator(PROJECT)) as host:
        assert dict(os.environ) == before, "the emulator must leave the environment to the caller"
        running = _Running(host)
        assert len(running.pids) >= 2, "gcloud and its Java child"
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        publisher = pubsub_v1.PublisherClient()
        try:
            topic = publisher.topic_path(PROJECT, f"commands-{uuid.uuid4().hex[:8]}")
            publisher.create_topic(name=topic)
            assert publisher.get_topic(topic=topic).name == topic
        finally:
            publisher.transport.close()
    running.assert_gone()


@pytest.mark.emulator
def test_a_keyboard_interrupt_inside_the_block_still_stops_the_emulator() -> None:
    seen: list[_Running] = []

    def interrupted_while_running() -> None:
        with available(pubsub_emulator(PROJECT)) as host:
            seen.append(_Running(host))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_while_running()
    (running,) = seen
    assert running.pids, "the emulator was running inside the block"
    running.assert_gone()


@pytest.mark.parametrize("emulator", [firestore_emulator, pubsub_emulator])
def test_without_gcloud_on_path_an_emulator_is_unavailable_with_a_one_line_reason(
    emulator: EmulatorManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmulatorUnavailable) as raised, emulator(PROJECT):
        pytest.fail("the block must not run without gcloud")
    assert str(raised.value) == GCLOUD_MISSING
    assert str(raised.value) == (
        "gcloud is not on PATH (install the Google Cloud CLI with the firestore and pubsub "
        "emulators and Java)"
    )
