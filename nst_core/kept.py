"""A few things kept per process, by key: loaded models, style vectors.

Methods keep what is costly to make (a network read from its file, a painting's style vector)
so that a batch, a preview server or a Dask worker pays for it once. :class:`Kept` is a small,
thread-safe, least-recently-used store; what it holds is made outside its lock, so two threads
may make the same thing at once, and one of them is kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    """At most ``size`` things by key, the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The thing kept under ``key``, made with ``make()`` (and kept) if there is none."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        made = make()
        with self._lock:
            self._items[key] = made
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return made
