"""A device's tariff must be one hpsteer has, for the device's price area: at registration, on a
change and in every row of an import, a refusal names the field ``tariff_id`` and writes nothing.

The rig is the one of ``tests/services/test_fleet_admin.py`` (:class:`LocalFleet` on the local
backends, its accounts onboarded, the document store the local one and Firestore's emulator: a
change is refused inside its transaction); SE3 devices, whose tariff is Vattenfall's T4.
"""

from __future__ import annotations

from typing import Any

import pytest

from hpsteer.domain.operator_requests import DeviceUpdate
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.operator import devices
from hpsteer.services.operator.device_import import import_devices
from hpsteer.services.operator.errors import Refused
from tests.services.test_dispatch import T0, home_of
from tests.services.test_fleet_admin import ADMIN, ALICE, account_of, audit_rows, registration

SE3_TARIFF = "se3-vattenfall-t4"


@pytest.fixture
def local(document_store: DocumentStore) -> LocalFleet:
    fleet = LocalFleet.build(start=T0, homes=3, seed=11, wrap_store=lambda _: document_store)
    fleet.register_devices()
    return fleet


def stored(local: LocalFleet, device_id: str) -> dict[str, Any]:
    snapshot = local.deps.store.get(f"devices/{device_id}")
    assert snapshot is not None
    return snapshot.data


# -- registration -----------------------------------------------------------------------------


def test_a_registration_with_a_tariff_of_its_area_stores_it(local: LocalFleet) -> None:
    registered = devices.register_device(
        local.deps, ALICE, registration(local, tariff_id=SE3_TARIFF)
    )

    assert registered.device.tariff_id == SE3_TARIFF
    assert stored(local, registered.device.device_id)["tariff_id"] == SE3_TARIFF


@pytest.mark.parametrize(
    ("tariff_id", "code", "message"),
    [
        ("se3-nowhere", "unknown_tariff", "no tariff 'se3-nowhere'; known: de-ew-wanfried"),
        ("dk1-n1", "tariff_area_mismatch", "tariff 'dk1-n1' is for price area DK1, not SE3"),
    ],
)
def test_a_registration_with_an_unknown_tariff_or_one_of_another_area_is_refused(
    local: LocalFleet, tariff_id: str, code: str, message: str
) -> None:
    with pytest.raises(Refused) as refused:
        devices.register_device(local.deps, ALICE, registration(local, tariff_id=tariff_id))

    assert (refused.value.code, refused.value.field) == (code, "tariff_id")
    assert message in str(refused.value)
    assert local.deps.store.get(devices.device_key_path("viessmann", "vitocal-0001")) is None
    assert audit_rows(local) == []


def test_a_registration_without_a_tariff_needs_no_tariff_file(
    local: LocalFleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HPSTEER_TARIFFS_DIR", str(tmp_path / "nowhere"))

    registered = devices.register_device(local.deps, ALICE, registration(local))

    assert registered.device.tariff_id is None


def test_a_tariff_folder_that_cannot_be_read_refuses_the_tariff_without_a_server_error(
    local: LocalFleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HPSTEER_TARIFFS_DIR", str(tmp_path / "nowhere"))

    with pytest.raises(Refused) as refused:
        devices.register_device(local.deps, ALICE, registration(local, tariff_id=SE3_TARIFF))

    assert (refused.value.code, refused.value.field) == ("unusable_tariff", "tariff_id")


# -- change -----------------------------------------------------------------------------------


def update(tariff_id: str | None) -> DeviceUpdate:
    return DeviceUpdate.model_validate({"tariff_id": tariff_id})


def test_a_change_to_a_tariff_of_the_devices_area_is_stored_and_audited(
    local: LocalFleet,
) -> None:
    device_id = home_of(local, "viessmann").home_id

    changed = devices.update_device(local.deps, ALICE, device_id, update(SE3_TARIFF))

    assert changed.tariff_id == SE3_TARIFF
    [row] = audit_rows(local)
    assert (row["before"]["tariff_id"], row["after"]["tariff_id"]) == (None, SE3_TARIFF)


@pytest.mark.parametrize(
    ("tariff_id", "code"),
    [("se3-nowhere", "unknown_tariff"), ("dk2-radius", "tariff_area_mismatch")],
)
def test_a_change_to_an_unknown_tariff_or_one_of_another_area_is_refused_and_changes_nothing(
    local: LocalFleet, tariff_id: str, code: str
) -> None:
    device_id = home_of(local, "viessmann").home_id
    before = stored(local, device_id)

    with pytest.raises(Refused) as refused:
        devices.update_device(local.deps, ALICE, device_id, update(tariff_id))

    assert (refused.value.code, refused.value.field) == (code, "tariff_id")
    assert stored(local, device_id) == before
    assert audit_rows(local) == []


def test_removing_the_tariff_is_always_allowed(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id
    devices.update_device(local.deps, ALICE, device_id, update(SE3_TARIFF))

    changed = devices.update_device(local.deps, ALICE, device_id, update(None))

    assert changed.tariff_id is None
    assert stored(local, device_id)["tariff_id"] is None


# -- import -----------------------------------------------------------------------------------


def test_an_import_refuses_each_row_whose_tariff_is_unknown_or_of_another_area(
    local: LocalFleet,
) -> None:
    account = account_of(local, "viessmann")
    text = (
        "manufacturer,external_id,account_id,price_area,latitude,longitude,archetype,"
        "min_indoor_temp_c,setpoint_c,max_indoor_temp_c,tariff_id\n"
        f"viessmann,good,{account},SE3,59.3,18.1,old_radiators,20,21,23,{SE3_TARIFF}\n"
        f"viessmann,unknown,{account},SE3,59.3,18.1,old_radiators,20,21,23,se3-nowhere\n"
        f"viessmann,danish,{account},SE3,59.3,18.1,old_radiators,20,21,23,dk1-n1\n"
        f"viessmann,none,{account},SE3,59.3,18.1,old_radiators,20,21,23,\n"
    )

    report = import_devices(local.deps, ADMIN, text)

    by_line = {row.line: row for row in report.rows}
    assert (report.imported, report.refused) == (2, 2)
    assert (by_line[3].code, by_line[3].field) == ("unknown_tariff", "tariff_id")
    assert (by_line[4].code, by_line[4].field) == ("tariff_area_mismatch", "tariff_id")
    assert stored(local, by_line[2].device_id or "")["tariff_id"] == SE3_TARIFF
    assert stored(local, by_line[5].device_id or "")["tariff_id"] is None
    for external_id in ("unknown", "danish"):
        assert local.deps.store.get(devices.device_key_path("viessmann", external_id)) is None
