"""Saved graphs on PostgreSQL (SPEC §1): versions, identity, ownership, listing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from autoexec.errors import NotFoundError
from autoexec.graph import GraphDefinition, parse_definition
from autoexec.store.db import Database
from autoexec.store.graphs import (
    SavedGraph,
    graph_ids_named,
    latest_version_number,
    list_graphs,
    load_graph,
    save_graph,
    save_version,
)


def spec_example(name: str = "add", b: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "a", "block_id": "agent_input", "input_default": {"name": "x"}},
            {
                "id": "calc",
                "block_id": "calculator",
                "input_default": {"operation": "add", "b": b},
                "metadata": {"position": {"x": 10, "y": 20}},
            },
            {"id": "out", "block_id": "agent_output", "input_default": {"name": "sum"}},
        ],
        "links": [
            {"source_id": "a", "source_name": "result", "sink_id": "calc", "sink_name": "a"},
            {
                "source_id": "calc",
                "source_name": "result",
                "sink_id": "out",
                "sink_name": "value",
            },
        ],
    }


def save(db: Database, data: dict[str, Any], user_id: str = "alice") -> tuple[str, int]:
    with db.session() as session:
        return save_graph(session, parse_definition(copy.deepcopy(data)), user_id)


def calc_b(definition: GraphDefinition) -> Any:
    return next(n for n in definition.nodes if n.id == "calc").input_default["b"]


def test_saving_the_same_definition_twice_keeps_version_one(db: Database) -> None:
    first = save(db, spec_example())
    second = save(db, spec_example())

    assert first[1] == 1
    assert second == first
    with db.session() as session:
        assert latest_version_number(session, first[0], "alice") == 1
        assert len(list_graphs(session, "alice")) == 1


def test_saving_with_keys_in_another_order_is_the_same_version(db: Database) -> None:
    graph_id, version = save(db, spec_example())
    reordered = spec_example()
    reordered["nodes"][1]["input_default"] = {"b": 1, "operation": "add"}

    assert save(db, reordered) == (graph_id, version)


def test_changing_a_node_makes_version_two_with_the_same_id(db: Database) -> None:
    graph_id, version = save(db, spec_example(b=1))
    new_id, new_version = save(db, spec_example(b=2))

    assert version == 1
    assert (new_id, new_version) == (graph_id, 2)
    # saving the changed definition again does not make a third version
    assert save(db, spec_example(b=2)) == (graph_id, 2)


def test_both_versions_load_with_their_own_content(db: Database) -> None:
    graph_id, _ = save(db, spec_example(b=1))
    save(db, spec_example(b=2))

    with db.session() as session:
        v1 = load_graph(session, graph_id, 1, "alice")
        v2 = load_graph(session, graph_id, 2, "alice")

    assert (v1.id, v1.version, v1.user_id) == (graph_id, 1, "alice")
    assert (v2.id, v2.version, v2.user_id) == (graph_id, 2, "alice")
    assert calc_b(v1) == 1
    assert calc_b(v2) == 2
    assert v1.name == v2.name == "add"
    assert [n.id for n in v1.nodes] == ["a", "calc", "out"]
    assert v1.node("calc").metadata == {"position": {"x": 10, "y": 20}}
    assert [(link.source_id, link.sink_id) for link in v2.links] == [
        ("a", "calc"),
        ("calc", "out"),
    ]


def test_resaving_a_loaded_graph_unchanged_keeps_its_version(db: Database) -> None:
    graph_id, version = save(db, spec_example())
    with db.session() as session:
        loaded = load_graph(session, graph_id, version, "alice")

    with db.session() as session:
        assert save_graph(session, loaded, "alice") == (graph_id, 1)


def test_loaded_graph_keeps_the_saved_definition(db: Database) -> None:
    graph_id, version = save(db, spec_example())

    with db.session() as session:
        loaded = load_graph(session, graph_id, version, "alice")

    as_definition = GraphDefinition.model_validate(
        loaded.model_dump(exclude={"id", "version", "user_id"})
    )
    assert as_definition == parse_definition(spec_example())
    assert as_definition.content_hash() == parse_definition(spec_example()).content_hash()


def test_another_user_cannot_load_the_graph(db: Database) -> None:
    graph_id, version = save(db, spec_example())

    with db.session() as session, pytest.raises(NotFoundError):
        load_graph(session, graph_id, version, "bob")
    with db.session() as session, pytest.raises(NotFoundError):
        latest_version_number(session, graph_id, "bob")


def test_missing_version_is_not_found(db: Database) -> None:
    graph_id, _ = save(db, spec_example())

    with db.session() as session, pytest.raises(NotFoundError):
        load_graph(session, graph_id, 2, "alice")


def test_same_name_for_two_users_makes_two_graphs(db: Database) -> None:
    alice_id, alice_version = save(db, spec_example(), "alice")
    bob_id, bob_version = save(db, spec_example(), "bob")

    assert alice_id != bob_id
    assert alice_version == bob_version == 1


def test_explicit_id_is_used(db: Database) -> None:
    data = spec_example()
    data["id"] = "my-adder"

    assert save(db, data) == ("my-adder", 1)
    data["nodes"][1]["input_default"]["b"] = 5
    assert save(db, data) == ("my-adder", 2)

    with db.session() as session:
        loaded = load_graph(session, "my-adder", 2, "alice")
    assert loaded.id == "my-adder"
    assert calc_b(loaded) == 5


def test_explicit_id_of_another_users_graph_is_not_found(db: Database) -> None:
    data = spec_example()
    data["id"] = "taken"
    save(db, data, "alice")

    with pytest.raises(NotFoundError):
        save(db, data, "bob")


def test_a_new_name_makes_a_new_graph(db: Database) -> None:
    first_id, _ = save(db, spec_example(name="one"))
    second_id, second_version = save(db, spec_example(name="two"))

    assert second_id != first_id
    assert second_version == 1


def test_list_graphs_returns_the_latest_version_only(db: Database) -> None:
    add_id, _ = save(db, spec_example(name="add", b=1))
    save(db, spec_example(name="add", b=2))
    save(db, spec_example(name="add", b=3))
    other_id, _ = save(db, spec_example(name="other"))
    save(db, spec_example(name="bobs"), "bob")

    with db.session() as session:
        graphs = list_graphs(session, "alice")

    by_id = {g.id: g for g in graphs}
    assert set(by_id) == {add_id, other_id}
    assert by_id[add_id].version == 3
    assert calc_b(by_id[add_id]) == 3
    assert by_id[other_id].version == 1
    assert all(g.user_id == "alice" for g in graphs)


def test_list_graphs_of_a_user_without_graphs_is_empty(db: Database) -> None:
    save(db, spec_example(), "alice")

    with db.session() as session:
        assert list_graphs(session, "nobody") == []


def test_a_save_by_name_says_so_and_new_makes_a_separate_graph(db: Database) -> None:
    first_id, _ = save(db, spec_example(b=1))
    with db.session() as session:
        by_name = save_version(session, parse_definition(spec_example(b=2)), "alice")
        separate = save_version(session, parse_definition(spec_example(b=3)), "alice", new=True)
        named = graph_ids_named(session, "alice", "add")

    assert by_name == SavedGraph(first_id, 2, by_name=True, changed=True)
    assert separate.graph_id != first_id
    assert (separate.version, separate.by_name, separate.changed) == (1, False, True)
    assert named == [separate.graph_id, first_id]  # the one saved under the name last first
    assert save(db, spec_example(b=4)) == (separate.graph_id, 2)
