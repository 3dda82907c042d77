"""Settings come from HPSTEER_* variables and refuse a cloud run without a project."""

import pydantic
import pytest

from hpsteer.config import Settings

EMULATOR_VARIABLES = (
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "HPSTEER_TASKS_EMULATOR_HOST",
    "HPSTEER_BIGQUERY_EMULATOR_HOST",
    "HPSTEER_SECRET_MANAGER_EMULATOR_HOST",
)


@pytest.fixture(autouse=True)
def no_emulators(monkeypatch):
    for name in EMULATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_is_the_local_backend(monkeypatch):
    for name in ("HPSTEER_BACKEND", "HPSTEER_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.backend == "local"
    assert not settings.uses_emulators
    assert settings.effective_tasks_location == "europe-west1"


def test_the_cloud_backend_needs_a_real_project(monkeypatch):
    monkeypatch.setenv("HPSTEER_BACKEND", "gcp")
    monkeypatch.delenv("HPSTEER_PROJECT", raising=False)
    with pytest.raises(pydantic.ValidationError, match="needs HPSTEER_PROJECT"):
        Settings()
    monkeypatch.setenv("HPSTEER_PROJECT", "acme-energy-prod")
    assert Settings().project == "acme-energy-prod"


def test_the_official_emulator_variables_are_read(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8081")
    monkeypatch.setenv("HPSTEER_TASKS_EMULATOR_HOST", "127.0.0.1:9090")
    settings = Settings()
    assert settings.firestore_emulator_host == "127.0.0.1:8081"
    assert settings.tasks_emulator_host == "127.0.0.1:9090"
    assert settings.uses_emulators


def test_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("HPSTEER_BACKEND", "aws")
    with pytest.raises(pydantic.ValidationError, match="backend"):
        Settings()
