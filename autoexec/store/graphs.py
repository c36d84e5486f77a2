"""Saved graphs: versioned, immutable once saved."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autoexec.errors import GraphValidationError, NotFoundError
from autoexec.graph import Graph, GraphDefinition
from autoexec.store.tables import GraphExecution, GraphVersion, User


def ensure_user(session: Session, user_id: str) -> None:
    if session.get(User, user_id) is None:
        session.add(User(id=user_id))
        session.flush()


@dataclass(frozen=True)
class SavedGraph:
    """What a save did. ``by_name``: the definition had no id and took the id of the user's
    graph of the same name; ``changed``: the save stored a new version."""

    graph_id: str
    version: int
    by_name: bool
    changed: bool


def save_graph(
    session: Session, definition: GraphDefinition, user_id: str, new: bool = False
) -> tuple[str, int]:
    """``save_version``, as ``(graph_id, version)``."""
    saved = save_version(session, definition, user_id, new)
    return saved.graph_id, saved.version


def save_version(
    session: Session, definition: GraphDefinition, user_id: str, new: bool = False
) -> SavedGraph:
    """Store ``definition`` for ``user_id``; an unchanged definition keeps its latest version.

    The graph is identified by the definition's ``id`` if it has one, else by its name among the
    user's graphs; a new name, or ``new``, makes a new graph.
    """
    if new and definition.id:
        raise GraphValidationError(
            f"a new graph was asked for, but the definition names graph id {definition.id!r}: "
            "drop its id to save it as a separate graph, or save without new for a new version"
        )
    ensure_user(session, user_id)
    by_name = None if new or definition.id else graph_id_by_name(session, user_id, definition.name)
    graph_id = definition.id or by_name
    latest = _latest_version(session, graph_id, user_id) if graph_id else None
    digest = definition.content_hash()
    if latest is not None and latest.content_hash == digest:
        return SavedGraph(latest.id, latest.version, by_name is not None, changed=False)
    row = GraphVersion(
        id=graph_id or str(uuid.uuid4()),
        version=(latest.version + 1) if latest else 1,
        user_id=user_id,
        name=definition.name,
        description=definition.description,
        definition=definition.model_dump(mode="json", exclude={"id"}),
        content_hash=digest,
    )
    session.add(row)
    session.flush()
    return SavedGraph(row.id, row.version, by_name is not None, changed=True)


def graph_id_by_name(session: Session, user_id: str, name: str) -> str | None:
    """The id of the user's graph called ``name`` (the one saved last, if several are)."""
    ids = graph_ids_named(session, user_id, name)
    return ids[0] if ids else None


def graph_ids_named(session: Session, user_id: str, name: str) -> list[str]:
    """The ids of the user's graphs with a version called ``name``, the one last saved under
    that name first."""
    stmt = (
        select(GraphVersion.id, func.max(GraphVersion.created_at).label("saved"))
        .where(GraphVersion.user_id == user_id, GraphVersion.name == name)
        .group_by(GraphVersion.id)
        .order_by(func.max(GraphVersion.created_at).desc())
    )
    return [row.id for row in session.execute(stmt)]


def _latest_version(session: Session, graph_id: str, user_id: str) -> GraphVersion | None:
    stmt = (
        select(GraphVersion)
        .where(GraphVersion.id == graph_id)
        .order_by(GraphVersion.version.desc())
        .limit(1)
    )
    row = session.scalar(stmt)
    if row is not None and row.user_id != user_id:
        raise NotFoundError(f"graph {graph_id!r} not found")
    return row


def graph_exists(session: Session, graph_id: str, user_id: str) -> bool:
    stmt = select(GraphVersion.id).where(
        GraphVersion.id == graph_id, GraphVersion.user_id == user_id
    )
    return session.scalar(stmt.limit(1)) is not None


def latest_version_number(session: Session, graph_id: str, user_id: str) -> int:
    stmt = select(func.max(GraphVersion.version)).where(
        GraphVersion.id == graph_id, GraphVersion.user_id == user_id
    )
    version = session.scalar(stmt)
    if version is None:
        raise NotFoundError(f"graph {graph_id!r} not found")
    return version


def load_graph(session: Session, graph_id: str, version: int, user_id: str | None = None) -> Graph:
    """Load one version; with ``user_id``, another user's graph is not found.

    Only the small identity columns are read when the parsed graph is already cached.
    """
    identity = session.execute(
        select(GraphVersion.user_id, GraphVersion.content_hash).where(
            GraphVersion.id == graph_id, GraphVersion.version == version
        )
    ).first()
    if identity is None or (user_id is not None and identity.user_id != user_id):
        raise NotFoundError(f"graph {graph_id!r} version {version} not found")
    cached = _graph_cache.get((graph_id, version, identity.content_hash, identity.user_id))
    if cached is not None:
        return cached
    row = session.get(GraphVersion, (graph_id, version))
    if row is None:
        raise NotFoundError(f"graph {graph_id!r} version {version} not found")
    return to_graph(row)


_run_graphs: dict[str, Graph] = {}


def load_run_graph(session: Session, graph_exec_id: str, graph_id: str, version: int) -> Graph:
    """The graph version a graph execution runs. An execution never changes version and its
    id is never reused, so the graph is kept by execution id with no read to check it."""
    graph = _run_graphs.get(graph_exec_id)
    if graph is None:
        graph = load_graph(session, graph_id, version)
        if len(_run_graphs) > 1024:
            _run_graphs.clear()
        _run_graphs[graph_exec_id] = graph
    return graph


def read_run_graph(session: Session, graph_exec_id: str) -> Graph | None:
    """The graph ``graph_exec_id`` runs, as ``load_run_graph`` keeps it (a read of the run's
    graph version when it is not kept yet); None if there is no such run."""
    graph = _run_graphs.get(graph_exec_id)
    if graph is not None:
        return graph
    stmt = select(GraphExecution.graph_id, GraphExecution.graph_version).where(
        GraphExecution.id == graph_exec_id
    )
    row = session.execute(stmt).first()
    if row is None:
        return None
    return load_run_graph(session, graph_exec_id, row.graph_id, row.graph_version)


def list_graphs(session: Session, user_id: str) -> list[Graph]:
    """The latest version of each of the user's graphs."""
    latest = (
        select(GraphVersion.id, func.max(GraphVersion.version).label("version"))
        .where(GraphVersion.user_id == user_id)
        .group_by(GraphVersion.id)
        .subquery()
    )
    stmt = select(GraphVersion).join(
        latest, (GraphVersion.id == latest.c.id) & (GraphVersion.version == latest.c.version)
    )
    return [to_graph(row) for row in session.scalars(stmt.order_by(GraphVersion.name))]


_graph_cache: dict[tuple[str, int, str, str], Graph] = {}


def to_graph(row: GraphVersion) -> Graph:
    # Versions are immutable, so a parsed graph is kept for the life of the process.
    key = (row.id, row.version, row.content_hash, row.user_id)
    graph = _graph_cache.get(key)
    if graph is None:
        graph = Graph.model_validate(
            {**row.definition, "id": row.id, "version": row.version, "user_id": row.user_id}
        )
        if len(_graph_cache) > 1024:
            _graph_cache.clear()
        _graph_cache[key] = graph
    return graph
