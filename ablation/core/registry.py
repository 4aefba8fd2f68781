"""One small name -> entry registry, used for architectures, attention types and datasets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Lower-case names mapped to entries (builders, or descriptions that carry their builder);
    a duplicate or unknown name is an error naming the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self)}") from None

    __getitem__ = get

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) in registration order."""
        return list(self._entries.items())

    def names(self) -> tuple[str, ...]:
        """The names in registration order (the order a schema lists its choices in)."""
        return tuple(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
