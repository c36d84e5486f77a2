"""Graph definitions for tests, written short."""

from __future__ import annotations

import uuid
from typing import Any


def user() -> str:
    """A new user id: each test's graphs and runs apart from every other's."""
    return f"user-{uuid.uuid4().hex[:8]}"


def graph(nodes: list[dict[str, Any]], links: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """A graph definition; each link is ``(source_id, source_pin, sink_id, sink_pin)``."""
    return {
        "name": f"g-{uuid.uuid4().hex[:8]}",
        "nodes": nodes,
        "links": [
            {"source_id": s, "source_name": sn, "sink_id": t, "sink_name": tn}
            for s, sn, t, tn in links
        ],
    }


def node(node_id: str, block_id: str, **defaults: Any) -> dict[str, Any]:
    return {"id": node_id, "block_id": block_id, "input_default": defaults}


def fanned_out(node_dict: dict[str, Any], pin: str) -> dict[str, Any]:
    return {**node_dict, "fan_out": pin}


ADD_ONE = graph(
    [
        node("x", "agent_input", name="x"),
        node("calc", "calculator", operation="add", b=1),
        node("out", "agent_output", name="sum"),
    ],
    [("x", "result", "calc", "a"), ("calc", "result", "out", "value")],
)


# a * b -> product: the graph of the numbers rule's tests (inf and NaN).
MULTIPLY = graph(
    [
        node("a", "agent_input", name="a"),
        node("b", "agent_input", name="b"),
        node("calc", "calculator", operation="multiply"),
        node("out", "agent_output", name="product"),
    ],
    [
        ("a", "result", "calc", "a"),
        ("b", "result", "calc", "b"),
        ("calc", "result", "out", "value"),
    ],
)
NOT_FINITE = "it holds a number that is not finite (inf, -inf or NaN), which JSON cannot hold"
