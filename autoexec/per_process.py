"""One object per process, for objects that own a background thread: a forked worker child
does not inherit its parent's threads, so it gets an object (and a thread) of its own."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class OwnsThread(Protocol):
    pid: int
    thread: threading.Thread


T = TypeVar("T", bound=OwnsThread)


class PerProcess(Generic[T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._current: T | None = None

    def existing(self) -> T | None:
        """This process's object if it has made one, without making one."""
        current = self._current
        return current if current is not None and current.pid == os.getpid() else None

    def get(self) -> T:
        """This process's object, made anew when none is alive in this process."""
        with self._lock:
            current = self._current
            if current is None or current.pid != os.getpid() or not current.thread.is_alive():
                current = self._current = self._factory()
            return current
