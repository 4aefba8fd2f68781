"""One small name -> builder registry, used for architectures, attention types and datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Lower-case names mapped to builders; a duplicate or unknown name is an error naming the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(builder: T) -> T:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return add

    def get(self, name: str) -> T:
        try:
            return self._builders[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._builders))

    def __contains__(self, name: object) -> bool:
        return name in self._builders
