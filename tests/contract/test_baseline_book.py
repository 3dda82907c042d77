"""The households' own settings, remembered in the store so every instance steers around them."""

from datetime import UTC, datetime

from hpsteer.adapters.baseline import MemoryBaselineBook, StoreBaselineBook
from hpsteer.adapters.protocol import AdapterContext
from hpsteer.backends.local.secrets import EnvSecretStore
from hpsteer.ports.clock import SimulatedClock

T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)
KEY = "inst-1/gw-7633107/0/heating.circuits.0.operating.programs.normalHeating"


def test_a_learnt_baseline_is_read_back_by_another_instance(document_store):
    clock = SimulatedClock(T0)
    StoreBaselineBook(document_store, "viessmann", clock).put(KEY, {"temperature": 21.0})
    other = StoreBaselineBook(document_store, "viessmann", clock)
    assert other.get(KEY) == {"temperature": 21.0}
    assert other.get(KEY + "x") is None


def test_the_first_value_learnt_wins(document_store):
    clock = SimulatedClock(T0)
    book = StoreBaselineBook(document_store, "viessmann", clock)
    book.put(KEY, {"temperature": 21.0})
    book.put(KEY, {"temperature": 23.0})  # an instance that read an already shifted value
    assert book.get(KEY) == {"temperature": 21.0}


def test_forgetting_a_device_drops_every_lever_it_had_and_nothing_else(document_store):
    book = StoreBaselineBook(document_store, "viessmann", SimulatedClock(T0))
    book.put("inst-1/gw/0/curve", {"shift": 0.0, "slope": 1.4})
    book.put("inst-1/gw/0/program", {"temperature": 21.0})
    book.put("inst-1/gw/1/program", {"temperature": 20.0})
    book.forget("inst-1/gw/0/")
    assert book.get("inst-1/gw/0/curve") is None
    assert book.get("inst-1/gw/0/program") is None
    assert book.get("inst-1/gw/1/program") == {"temperature": 20.0}


def test_the_stored_document_says_what_it_is(document_store):
    StoreBaselineBook(document_store, "nibe_myuplink", SimulatedClock(T0)).put(
        "sys/dev/47011", {"offset": 0.0}
    )
    (document,) = document_store.query("manufacturers/nibe_myuplink/baselines").documents
    assert document.data["key"] == "sys/dev/47011"
    assert document.data["values"] == {"offset": 0.0}
    assert document.data["learnt_at"] == T0


def test_an_adapter_context_with_a_store_shares_baselines_and_without_one_keeps_them_in_memory(
    document_store,
):
    clock = SimulatedClock(T0)
    secrets = EnvSecretStore(environ={})
    shared = AdapterContext(secrets=secrets, clock=clock, store=document_store)
    assert isinstance(shared.baselines("viessmann"), StoreBaselineBook)
    alone = AdapterContext(secrets=secrets, clock=clock)
    assert isinstance(alone.baselines("viessmann"), MemoryBaselineBook)
