"""The secrets contract: the same tests against files and Secret Manager (a fake gRPC server).

The Secret Manager param runs the real ``SecretManagerServiceClient`` over gRPC against
:class:`~tests.support.secret_manager.FakeSecretManager`, which speaks the service's own messages.
The environment store is a reader only; its tests follow the shared ones.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from hpsteer.backends.local.secrets import EnvSecretStore, FileSecretStore, MemorySecretStore
from hpsteer.errors import (
    HpsteerError,
    InvalidInput,
    PermanentError,
    SecretNotFound,
    SecretsUnavailable,
)
from hpsteer.ports.secrets import SecretStore, SecretValue
from tests.support.secret_manager import (  # noqa: F401 - pytest finds the fixture by its name
    PROJECT,
    FakeSecretManager,
    secret_manager_fake,
)

PAYLOAD = b"tok-7f3a9c51-DO-NOT-LOG"
"""Distinctive, so that any leak into a message or repr is found by a substring search."""


@dataclass
class Backend:
    name: str
    store: SecretStore
    fake: FakeSecretManager | None = None


def secret_manager_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    from hpsteer.backends.gcp.secret_manager import SecretManagerStore

    fake: FakeSecretManager = request.getfixturevalue("secret_manager_fake")
    fake.reset()
    client = fake.client()
    yield Backend("secret_manager", SecretManagerStore(PROJECT, client=client, deadline_s=2), fake)
    client.transport.close()


@pytest.fixture(
    params=["file", "memory", pytest.param("secret_manager", marks=pytest.mark.emulator)]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        yield Backend("file", FileSecretStore(tmp_path / "secrets"))
    elif request.param == "memory":
        yield Backend("memory", MemorySecretStore())
    else:
        yield from secret_manager_backend(request)


@pytest.fixture
def secret_manager(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Secret Manager only: for what files and the environment do not have (checksums, IAM)."""
    yield from secret_manager_backend(request)


def assert_hides_payload(thing: object) -> None:
    """Neither ``str`` nor ``repr`` of ``thing`` (nor of an error's causes) shows the payload."""
    secret_text = PAYLOAD.decode()
    seen: object | None = thing
    while seen is not None:
        for shown in (str(seen), repr(seen)):
            assert secret_text not in shown
            assert repr(PAYLOAD) not in shown
        seen = seen.__cause__ if isinstance(seen, BaseException) else None


def test_an_added_version_is_the_latest_and_can_be_pinned(backend: Backend) -> None:
    version = backend.store.add_version("vicare-refresh-token", PAYLOAD)

    latest = backend.store.get("vicare-refresh-token")
    pinned = backend.store.get("vicare-refresh-token", version)

    assert latest.reveal() == PAYLOAD
    assert latest.version == version
    assert pinned.reveal() == PAYLOAD
    assert pinned.version == version
    assert pinned.reveal_text() == PAYLOAD.decode()


def test_versions_increase_and_older_versions_stay_readable(backend: Backend) -> None:
    first = backend.store.add_version("rotating", b"one")
    second = backend.store.add_version("rotating", b"two")

    assert int(second) > int(first)
    assert backend.store.get("rotating").reveal() == b"two"
    assert backend.store.get("rotating", first).reveal() == b"one"


def test_a_missing_secret_raises_secret_not_found(backend: Backend) -> None:
    with pytest.raises(SecretNotFound, match="never-stored"):
        backend.store.get("never-stored")


def test_a_missing_version_raises_secret_not_found(backend: Backend) -> None:
    backend.store.add_version("short-history", PAYLOAD)

    with pytest.raises(SecretNotFound, match="short-history") as raised:
        backend.store.get("short-history", "2")

    assert_hides_payload(raised.value)


def test_the_payload_never_shows_in_a_secret_value_or_an_error(backend: Backend) -> None:
    version = backend.store.add_version("api-key", PAYLOAD)
    value = backend.store.get("api-key", version)

    assert_hides_payload(value)
    assert "***" in repr(value)
    assert_hides_payload([value])  # containers use repr of their items
    errors: list[HpsteerError] = []
    for attempt in (
        lambda: backend.store.get("api-key", "99"),
        lambda: backend.store.get("api-key", "not-a-version"),
        lambda: backend.store.get("bad/name"),
        lambda: backend.store.add_version("bad name", PAYLOAD),
    ):
        with pytest.raises(HpsteerError) as raised:
            attempt()
        errors.append(raised.value)
    for error in errors:
        assert_hides_payload(error)


@pytest.mark.parametrize(
    "name",
    ["", "has space", "slash/inside", "dot.inside", "ü-umlaut", "x" * 256],
    ids=["empty", "space", "slash", "dot", "non-ascii", "too long"],
)
def test_invalid_secret_names_are_refused(backend: Backend, name: str) -> None:
    with pytest.raises(InvalidInput, match="secret name"):
        backend.store.add_version(name, PAYLOAD)
    with pytest.raises(InvalidInput, match="secret name"):
        backend.store.get(name)


def test_the_longest_valid_name_is_accepted(backend: Backend) -> None:
    name = "A_z-9" * 51

    version = backend.store.add_version(name, PAYLOAD)

    assert backend.store.get(name, version).reveal() == PAYLOAD


def test_an_empty_payload_is_a_version_too(backend: Backend) -> None:
    version = backend.store.add_version("emptied", b"")

    assert backend.store.get("emptied", version).reveal() == b""


def test_concurrent_adds_get_distinct_versions(backend: Backend) -> None:
    backend.store.add_version("contended", b"seed")
    versions: list[str] = []
    lock = threading.Lock()

    def add(i: int) -> None:
        version = backend.store.add_version("contended", f"v{i}".encode())
        with lock:
            versions.append(version)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(versions)) == 8
    assert {backend.store.get("contended", v).reveal() for v in versions} == {
        f"v{i}".encode() for i in range(8)
    }


def test_a_destroyed_version_can_no_longer_be_read(backend: Backend) -> None:
    old = backend.store.add_version("rotated", PAYLOAD)
    backend.store.add_version("rotated", b"newer")

    backend.store.destroy_version("rotated", old)

    with pytest.raises(SecretNotFound, match="rotated") as raised:
        backend.store.get("rotated", old)
    assert_hides_payload(raised.value)


def test_destroying_a_version_leaves_the_others_and_latest_readable(backend: Backend) -> None:
    first = backend.store.add_version("rotated", b"one")
    second = backend.store.add_version("rotated", b"two")
    third = backend.store.add_version("rotated", b"three")

    backend.store.destroy_version("rotated", second)

    assert backend.store.get("rotated", first).reveal() == b"one"
    assert backend.store.get("rotated", third).reveal() == b"three"
    assert backend.store.get("rotated").version == third
    assert backend.store.add_version("rotated", b"four") not in (first, second, third)


def test_destroying_twice_or_a_missing_version_is_not_an_error(backend: Backend) -> None:
    old = backend.store.add_version("rotated", b"one")
    backend.store.add_version("rotated", b"two")

    backend.store.destroy_version("rotated", old)
    backend.store.destroy_version("rotated", old)
    backend.store.destroy_version("rotated", "99")
    backend.store.destroy_version("never-stored", "1")

    assert backend.store.get("rotated").reveal() == b"two"


def test_destroying_latest_is_refused(backend: Backend) -> None:
    backend.store.add_version("rotated", PAYLOAD)

    with pytest.raises(InvalidInput, match="latest"):
        backend.store.destroy_version("rotated", "latest")

    assert backend.store.get("rotated").reveal() == PAYLOAD


@pytest.mark.emulator
def test_a_checksum_mismatch_raises_secrets_unavailable(secret_manager: Backend) -> None:
    fake = secret_manager.fake
    assert fake is not None
    secret_manager.store.add_version("checked", PAYLOAD)
    fake.corrupt_next_checksum()

    with pytest.raises(SecretsUnavailable, match="checksum") as raised:
        secret_manager.store.get("checked")

    assert_hides_payload(raised.value)
    assert secret_manager.store.get("checked").reveal() == PAYLOAD  # the next read is clean


@pytest.mark.emulator
def test_a_read_is_retried_after_a_transient_failure(secret_manager: Backend) -> None:
    fake = secret_manager.fake
    assert fake is not None
    secret_manager.store.add_version("flaky", PAYLOAD)
    fake.fail_next(grpc.StatusCode.UNAVAILABLE, times=2)

    assert secret_manager.store.get("flaky").reveal() == PAYLOAD


@pytest.mark.emulator
def test_an_add_that_meets_a_transient_failure_raises_secrets_unavailable(
    secret_manager: Backend,
) -> None:
    fake = secret_manager.fake
    assert fake is not None
    first = secret_manager.store.add_version("flaky-add", b"first")
    fake.fail_next(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(SecretsUnavailable, match="flaky-add") as raised:
        secret_manager.store.add_version("flaky-add", PAYLOAD)

    assert_hides_payload(raised.value)
    # Not retried (a retried add could add twice): the caller decides whether to add again.
    assert secret_manager.store.get("flaky-add").version == first


@pytest.mark.emulator
def test_permission_denied_is_permanent_and_names_only_the_secret(secret_manager: Backend) -> None:
    fake = secret_manager.fake
    assert fake is not None
    secret_manager.store.add_version("guarded", PAYLOAD)
    fake.fail_next(grpc.StatusCode.PERMISSION_DENIED)

    with pytest.raises(PermanentError, match="guarded") as raised:
        secret_manager.store.get("guarded")

    assert_hides_payload(raised.value)


@pytest.mark.emulator
def test_a_destroy_that_meets_a_transient_failure_raises_secrets_unavailable(
    secret_manager: Backend,
) -> None:
    fake = secret_manager.fake
    assert fake is not None
    old = secret_manager.store.add_version("flaky-destroy", PAYLOAD)
    secret_manager.store.add_version("flaky-destroy", b"newer")
    fake.fail_next(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(SecretsUnavailable, match="flaky-destroy"):
        secret_manager.store.destroy_version("flaky-destroy", old)

    assert secret_manager.store.get("flaky-destroy", old).reveal() == PAYLOAD  # still there


@pytest.mark.emulator
def test_the_production_wiring_reaches_the_fake_from_settings(
    secret_manager: Backend,
) -> None:
    from hpsteer.config import Settings
    from hpsteer.runtime.bootstrap import production

    fake = secret_manager.fake
    assert fake is not None
    settings = Settings(backend="gcp", project=PROJECT, secret_manager_emulator_host=fake.target)
    secrets = production(settings).secrets

    version = secrets.add_version("wired", PAYLOAD)

    assert secrets.get("wired").version == version


# -- file store specifics ----------------------------------------------------------------------


def test_file_versions_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)

    version = store.add_version("owner-only", PAYLOAD)

    mode = stat.S_IMODE((tmp_path / "owner-only" / version).stat().st_mode)
    assert mode == 0o600
    assert [p.name for p in (tmp_path / "owner-only").iterdir()] == [version]


def test_a_second_file_store_on_the_same_directory_sees_the_versions(tmp_path: Path) -> None:
    FileSecretStore(tmp_path).add_version("shared", b"one")

    assert FileSecretStore(tmp_path).add_version("shared", b"two") == "2"
    assert FileSecretStore(tmp_path).get("shared").reveal() == b"two"


# -- environment store (a reader) --------------------------------------------------------------


def test_the_environment_store_reads_the_prefixed_upper_case_variable() -> None:
    store = EnvSecretStore({"HPSTEER_SECRET_VICARE_CLIENT_SECRET": PAYLOAD.decode()})

    latest = store.get("vicare-client-secret")
    pinned = store.get("vicare-client-secret", "1")

    assert latest == SecretValue("vicare-client-secret", "1", PAYLOAD)
    assert pinned.reveal() == PAYLOAD
    assert_hides_payload(latest)


def test_the_environment_store_honours_another_prefix() -> None:
    store = EnvSecretStore({"APP_TOKEN": "t"}, prefix="APP_")

    assert store.get("token").reveal() == b"t"


def test_the_environment_store_has_only_version_one() -> None:
    store = EnvSecretStore({"HPSTEER_SECRET_TOKEN": PAYLOAD.decode()})

    with pytest.raises(SecretNotFound, match="version 2") as raised:
        store.get("token", "2")

    assert_hides_payload(raised.value)


def test_the_environment_store_reports_a_missing_variable_by_name() -> None:
    with pytest.raises(SecretNotFound, match="HPSTEER_SECRET_ABSENT_ONE"):
        EnvSecretStore({}).get("absent-one")


def test_the_environment_store_refuses_to_add_versions() -> None:
    store = EnvSecretStore({})

    with pytest.raises(InvalidInput, match="FileSecretStore") as raised:
        store.add_version("token", PAYLOAD)

    assert_hides_payload(raised.value)


def test_the_environment_store_refuses_to_destroy_versions() -> None:
    with pytest.raises(InvalidInput, match="read-only"):
        EnvSecretStore({"HPSTEER_SECRET_TOKEN": "t"}).destroy_version("token", "1")


def test_the_environment_store_refuses_invalid_names() -> None:
    with pytest.raises(InvalidInput, match="secret name"):
        EnvSecretStore({"HPSTEER_SECRET_A B": "x"}).get("a b")
