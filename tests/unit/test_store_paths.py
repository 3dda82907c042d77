"""The document store port's path and field-path validators."""

from __future__ import annotations

import pytest

from hpsteer.errors import InvalidDocumentPath, InvalidInput
from hpsteer.ports.store import (
    split_document_path,
    split_field_path,
    validate_collection_path,
    validate_document_path,
)


@pytest.mark.parametrize("path", ["devices/d1", "devices/d1/commands/c1", "a-b/c_d.e"])
def test_document_paths_with_an_even_number_of_segments_are_accepted(path: str) -> None:
    assert validate_document_path(path) == path


@pytest.mark.parametrize("path", ["devices", "devices/d1/commands", "a/b/c/d/e"])
def test_document_paths_with_an_odd_number_of_segments_are_refused(path: str) -> None:
    with pytest.raises(InvalidDocumentPath, match="even number"):
        validate_document_path(path)


@pytest.mark.parametrize(
    "path", ["", "a//b", "/a/b", "a/b/", "a/..", "./b", "__x__/b", "a/" + "x" * 1501]
)
def test_document_paths_with_empty_reserved_or_huge_segments_are_refused(path: str) -> None:
    with pytest.raises(InvalidDocumentPath):
        validate_document_path(path)


def test_a_non_string_path_is_refused() -> None:
    with pytest.raises(InvalidDocumentPath):
        validate_document_path(42)  # type: ignore[arg-type] # the wrong type is the point


@pytest.mark.parametrize("path", ["devices", "devices/d1/commands"])
def test_collection_paths_with_an_odd_number_of_segments_are_accepted(path: str) -> None:
    assert validate_collection_path(path) == path


@pytest.mark.parametrize("path", ["devices/d1", "", "a//b", "__x__"])
def test_other_collection_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidDocumentPath):
        validate_collection_path(path)


def test_split_document_path_gives_the_parent_collection_and_the_id() -> None:
    assert split_document_path("devices/d1/commands/c1") == ("devices/d1/commands", "c1")
    assert split_document_path("devices/d1") == ("devices", "d1")
    with pytest.raises(InvalidDocumentPath):
        split_document_path("devices")


def test_split_field_path_splits_on_dots() -> None:
    assert split_field_path("a") == ("a",)
    assert split_field_path("m.k.z") == ("m", "k", "z")


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a.__x__", "a`b"])
def test_bad_field_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        split_field_path(path)


def test_invalid_document_path_is_invalid_input() -> None:
    assert issubclass(InvalidDocumentPath, InvalidInput)
