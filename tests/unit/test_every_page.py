"""``every_page`` reads a query to its end, one page at a time, in the query's order."""

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.ports.store import Order, every_page


def test_every_page_yields_each_document_once_in_order_across_pages() -> None:
    store = LocalDocumentStore()
    for n in range(5):
        store.set(f"things/t{n}", {"n": n})
    fetched: list[str | None] = []

    def fetch(cursor: str | None):  # type: ignore[no-untyped-def]
        fetched.append(cursor)
        return store.query("things", order_by=[Order("n")], limit=2, cursor=cursor)

    assert [doc.data["n"] for doc in every_page(fetch)] == [0, 1, 2, 3, 4]
    assert len(fetched) == 3  # pages of 2, 2 and 1
    assert fetched[0] is None


def test_an_empty_query_is_one_fetch_and_nothing() -> None:
    store = LocalDocumentStore()
    assert list(every_page(lambda cursor: store.query("none", limit=2, cursor=cursor))) == []
