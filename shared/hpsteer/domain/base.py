"""Base classes for messages and documents: frozen pydantic v2 models with schema versions.

Every message and document hpsteer writes is a :class:`Record`: immutable, extra fields refused,
and carrying ``schema_version`` so that a reader knows which shape it holds. Reading untrusted
data goes through :meth:`Record.parse`, which turns pydantic's ``ValidationError`` into
:class:`~hpsteer.errors.MalformedMessage` naming the fields and, first of all, refuses a
``schema_version`` the model does not speak.

:data:`UtcDatetime` is the type of every instant field: timezone-aware (a naive value is refused),
converted to UTC, serialised as ISO 8601 with ``Z``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from hpsteer.domain.instants import UTC, format_instant
from hpsteer.errors import MalformedMessage

__all__ = ["FrozenModel", "Record", "UtcDatetime", "describe_validation_error"]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_instant, return_type=str, when_used="json"),
]


class FrozenModel(BaseModel):
    """An immutable value with no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    lines = []
    for problem in err.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "(root)"
        lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


class Record(FrozenModel):
    """A message or document with an explicit schema version.

    A subclass whose shape changes incompatibly sets ``SCHEMA_VERSION`` and the default of
    ``schema_version`` to the new number; readers refuse versions they do not speak.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = 1

    @model_validator(mode="after")
    def _known_schema_version(self) -> Self:
        if self.schema_version != self.SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not {self.SCHEMA_VERSION}, "
                f"the version {type(self).__name__} speaks"
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """Validate untrusted data; raise MalformedMessage with the fields at fault."""
        if not isinstance(data, Mapping):
            raise MalformedMessage(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        if "schema_version" not in data:
            raise MalformedMessage(f"{cls.__name__}: schema_version is missing")
        version = data["schema_version"]
        if version != cls.SCHEMA_VERSION:
            raise MalformedMessage(
                f"{cls.__name__}: unsupported schema_version {version!r}, "
                f"expected {cls.SCHEMA_VERSION}"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as err:
            raise MalformedMessage(f"{cls.__name__}: {describe_validation_error(err)}") from err

    @classmethod
    def parse_json(cls, raw: bytes | str) -> Self:
        import json

        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise MalformedMessage(f"{cls.__name__}: not JSON ({err})") from err
        return cls.parse(data)

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready form stored in documents and sent in messages."""
        return self.model_dump(mode="json")
