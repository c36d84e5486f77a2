"""Which stack a command talks to: a cluster's services, or the embedded stack of
``$AUTOEXEC_HOME``, whose engine runs either in this process or in another one that serves the
home (``autoexec.local_engine``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from autoexec.local_engine import ApiThroughEngine, LocalEngineServer, client_for

# How long a command waits for the socket of an engine that another process is starting.
SERVER_START_SECONDS = 10.0


@dataclass(frozen=True)
class Stack:
    embedded: bool
    # ``autoexec.api``, or on the embedded stack the api of the process that runs the engine.
    api: Any
    home: Path | None = None
    # Set when this process runs the embedded engine (and serves it to the home's others).
    server: LocalEngineServer | None = None

    @property
    def engine_elsewhere(self) -> bool:
        """Another process runs the embedded engine; the calls that reach runs go there."""
        return isinstance(self.api, ApiThroughEngine)

    @property
    def engine_here(self) -> bool:
        """Nodes of this stack's runs run in this process (they end when it exits)."""
        return self.server is not None


def _local_api() -> ModuleType:
    from autoexec import api

    return api


def select_stack(embedded: bool | None = None) -> Stack:
    """Use the embedded stack when asked, or when no broker is configured. On the embedded
    stack, the calls that reach a run go to the process that runs its engine, if one does."""
    if embedded is None:
        embedded = "AUTOEXEC_BROKER_URL" not in os.environ
    if not embedded:
        return Stack(embedded=False, api=_local_api())
    from autoexec.embedded import configure_embedded

    home = configure_embedded()  # also migrates the embedded database
    client = client_for(home)
    api = ApiThroughEngine(client) if client is not None else _local_api()
    return Stack(embedded=True, api=api, home=home)


@contextmanager
def stack_running_the_engine(
    embedded: bool | None = None, wait_for_others: bool = True
) -> Iterator[Stack]:
    """A stack on which runs can be started: on the embedded stack this process runs the
    home's engine while the block lasts, unless another process does already. On leaving, the
    runs other processes started here are waited for: they live in this process."""
    stack = select_stack(embedded)
    if not stack.embedded or isinstance(stack.api, ApiThroughEngine):
        yield stack
        return
    assert stack.home is not None
    from autoexec.embedded import embedded_engine, wait_for_served_runs

    with embedded_engine(stack.home) as server:
        if server is None:  # another process started serving the home just now
            yield Stack(True, ApiThroughEngine(_wait_for_server(stack.home)), stack.home)
            return
        yield Stack(True, stack.api, stack.home, server)
        others = server.served_runs()
        if others and wait_for_others:
            print(
                f"waiting for {len(others)} run(s) started from other terminals: "
                "they run in this process",
                file=sys.stderr,
            )
            wait_for_served_runs(server)


def _wait_for_server(home: Path) -> Any:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while (client := client_for(home)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the engine serving {home} did not answer")
        time.sleep(0.05)
    return client
