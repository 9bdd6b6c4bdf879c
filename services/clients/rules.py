"""Checks shared by the client and task rules: text that can be stored, pages that make sense, an edit made on a
revision that still holds."""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clientvault import fields
from clientvault.errors import Invalid, PreconditionFailed

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int


def writable_only(names: Iterable[str], writable: Collection[str]) -> None:
    """Refuses a field the caller cannot write, naming the first (alphabetically) of them."""
    unknown = sorted(set(names) - set(writable))
    if unknown:
        raise Invalid(f"unknown field {unknown[0]}", unknown[0])


def text(value: str | None, field: str, *, max_length: int, required: bool = False) -> str | None:
    """A caller's text: bounded, storable (PostgreSQL text cannot hold NUL), blank only if optional."""
    if value is None:
        if required:
            raise Invalid(f"{field} is required", field)
        return None
    if "\x00" in value:
        raise Invalid(f"{field} must not contain NUL characters", field)
    if len(value) > max_length:
        raise Invalid(f"{field} must be at most {max_length} characters", field)
    if required and not value.strip():
        raise Invalid(f"{field} must not be blank", field)
    return value


def page(page: int, page_size: int) -> tuple[int, int]:
    """(limit, offset) for a 1-based page; out of range is a 422."""
    if not 1 <= page <= fields.PAGE_MAX:
        raise Invalid(f"page must be between 1 and {fields.PAGE_MAX}", "page")
    if not 1 <= page_size <= fields.PAGE_SIZE_MAX:
        raise Invalid(f"pageSize must be between 1 and {fields.PAGE_SIZE_MAX}", "page_size")
    return page_size, (page - 1) * page_size


def changed(thing: str) -> PreconditionFailed:
    return PreconditionFailed(f"the {thing} was changed since it was read (If-Match): read it again and retry")


def unchanged(row: Any, if_revision: Collection[int], thing: str) -> None:
    """An edit on condition (`if_revision`, from If-Match) goes on only while the row, locked, is at one of those
    revisions; the update then checks it again in its own statement."""
    if if_revision and row.revision not in if_revision:
        raise changed(thing)
