"""The block registry: built-ins, the ``autoexec.blocks`` entry point group and
``AUTOEXEC_BLOCK_MODULES``."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from autoexec.blocks.base import Block
from autoexec.errors import BlockNotFoundError, ConfigurationError

ENTRY_POINT_GROUP = "autoexec.blocks"
BUILTIN_MODULE = "autoexec.blocks.builtin"

log = logging.getLogger(__name__)

AnyBlock = type[Block[Any]]


class BlockRegistry:
    """Maps a block id to its class."""

    def __init__(self) -> None:
        self._blocks: dict[str, AnyBlock] = {}

    def register(self, block: AnyBlock) -> AnyBlock:
        existing = self._blocks.get(block.id)
        if existing is not None and existing is not block:
            raise ConfigurationError(
                f"block id {block.id!r} is registered twice: "
                f"{existing.__module__}.{existing.__qualname__} and "
                f"{block.__module__}.{block.__qualname__}"
            )
        self._blocks[block.id] = block
        return block

    def register_module(self, module: ModuleType) -> None:
        """Register every concrete ``Block`` subclass defined in (or exported by) a module."""
        for block in blocks_in(module):
            self.register(block)

    def get(self, block_id: str) -> AnyBlock:
        try:
            return self._blocks[block_id]
        except KeyError:
            raise BlockNotFoundError(f"unknown block {block_id!r}") from None

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._blocks

    def all(self) -> list[AnyBlock]:
        return sorted(self._blocks.values(), key=lambda b: b.id)


def blocks_in(module: ModuleType) -> Iterable[AnyBlock]:
    exported = getattr(module, "__all__", None)
    names = exported if exported is not None else dir(module)
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, Block) and "id" in vars(obj):
            yield obj


def _import(module_name: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import block module {module_name!r} ({origin}): {exc}"
        ) from exc


def load_registry(extra_modules: Iterable[str] = ()) -> BlockRegistry:
    """Build a registry of the built-ins, entry-point blocks and the named modules."""
    registry = BlockRegistry()
    registry.register_module(_import(BUILTIN_MODULE, "built-in"))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        if isinstance(loaded, ModuleType):
            registry.register_module(loaded)
        else:
            registry.register(loaded)
    for name in extra_modules:
        registry.register_module(_import(name, "AUTOEXEC_BLOCK_MODULES"))
    return registry


@lru_cache(maxsize=1)
def get_registry() -> BlockRegistry:
    """The process-wide registry, built once from the settings."""
    from autoexec.settings import get_settings

    return load_registry(get_settings().block_module_names)
