"""Hypothesis strategies for random, valid graphs of built-in blocks whose result does not depend
on the order in which outputs arrive, so a parallel run can be compared with the sequential
reference interpreter (``autoexec.reference``).

How each rule of SPEC §3 is kept order-independent:

- The graph is a DAG (nodes only link from earlier nodes), no link enters an ``agent_input``
  node, and every linked sink pin is fed by exactly one link.
- An output pin is *multi* when it may carry more than one value in a run: the ``key`` and
  ``item`` of ``step_through_items``, and every pin of a node that may run more than once. A node
  *runs once* when every link into it comes from a single-valued pin; the values of its pins
  are *ordered*: one execution yields them, and §4 delivers them in yield order. The pins of a
  node that runs several times (in parallel, on a cluster) arrive in any order.
- A node with one linked pin may take it from anything, static or not: every delivery creates
  its own execution, and the static value it reads is the one just delivered.
- A node with two or more linked pins takes them in one of two shapes:
  * *ordered*: every non-static pin from an ordered pin (streams included, from different
    nodes too): each value fills the earliest execution lacking its pin (§3.2), so the n-th
    value of each pin lands in the n-th execution whatever the interleaving; static pins only
    from single-valued pins;
  * *driver*: one non-static pin from anything, every other pin a static link from a
    single-valued pin: each driver value makes one execution, which gets the static values
    whenever they arrive (the backfill of §3.4).
  Never a static link from a multi pin into such a node (static values override delivered ones
  in §3.3, so the value an execution runs with would depend on timing), and never an unordered
  pin next to another non-static pin (which value pairs with which would depend on timing).
- Input masks (§3.5) override a linked pin only on nodes with a single linked pin (on a node with
  two linked pins a masked one makes the execution ready before the other value arrives, and the
  late value then starts a second, order-dependent execution); otherwise masks set unlinked pins.
- A ``human_review`` node's reviews are all decided alike (one drawn decision per node), so
  which review comes first does not matter; an ``agent_executor`` runs one of a few fixed child
  graphs that neither fail nor refuse an input; a fan-out node yields once, like any node.
- Numbers stay small, text has no ``-`` or NUL, and dicts built at run time have one-character
  keys. These limits date from when values were stored as PostgreSQL ``jsonb`` (which rewrote
  ``1e+23`` and ``-0.0`` and reordered dict keys); values are plain JSON now, and
  ``test_differential.py`` has dedicated tests for those cases. The limits could be lifted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st

from autoexec.blocks.registry import load_registry
from autoexec.dataflow import RunSpec, graph_input_problems
from autoexec.graph import Graph

REGISTRY = load_registry()

OPERATIONS = ("add", "subtract", "multiply", "divide", "modulo")
COMPARATORS = ("==", "!=", ">", "<", ">=", "<=")
DICT_KEYS = ("1", "a", "b", "k", "z")  # one character each: see the module docstring
TEMPLATE_KEYS = ("x", "y", "z")

PREFIXES = {
    "agent_input": "in",
    "agent_output": "out",
    "calculator": "calc",
    "condition": "cond",
    "fill_text_template": "text",
    "create_dict": "dict",
    "create_list": "list",
    "find_in_dict": "find",
    "store_value": "store",
    "step_through_items": "step",
    "human_review": "review",
    "agent_executor": "child",
}

NUM = ("num",)
ANY = ("num", "str", "bool", "list", "dict", "any")
CONTAINER = ("list", "dict")

small_ints = st.integers(-5, 12)
numeric_strings = st.sampled_from(["3", "-2", "1.5", "0", "7"])
words = st.text(alphabet="abcxyz019 .é日", max_size=5)
scalars = st.one_of(small_ints, numeric_strings, words)
# Distinct elements, so that a value paired with the wrong one shows.
small_lists = st.one_of(
    st.lists(small_ints, min_size=1, max_size=3, unique=True),
    st.lists(words, min_size=1, max_size=3, unique=True),
    st.lists(scalars, max_size=3, unique=True),
)
small_dicts = st.one_of(
    st.dictionaries(st.sampled_from(DICT_KEYS), small_ints, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(DICT_KEYS), words, max_size=3),
).filter(lambda d: len(set(map(str, d.values()))) == len(d))

# The child graphs an ``agent_executor`` node may run (by a placeholder id, which the engine
# side replaces with the id the child is saved under), each with its outputs' names, as
# ``(name, kind)``; ``None`` for the kind of the input ``x``. Neither can fail, nor refuse an
# input at submission: the error of a failed child names its child execution's id, which the
# reference cannot know.
CHILD_GRAPHS: dict[str, dict[str, Any]] = {
    "child-echo": {
        "name": "child-echo",
        "nodes": [
            {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
            {"id": "y", "block_id": "agent_output", "input_default": {"name": "y"}},
        ],
        "links": [
            {"source_id": "x", "source_name": "result", "sink_id": "y", "sink_name": "value"}
        ],
    },
    "child-text": {
        "name": "child-text",
        "nodes": [
            {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
            {"id": "text", "block_id": "fill_text_template", "input_default": {"format": "<{x}>"}},
            {"id": "t", "block_id": "agent_output", "input_default": {"name": "t"}},
            {"id": "same", "block_id": "agent_output", "input_default": {"name": "same"}},
        ],
        "links": [
            {"source_id": "x", "source_name": "result", "sink_id": "text",
             "sink_name": "values_#_x"},
            {"source_id": "text", "source_name": "output", "sink_id": "t", "sink_name": "value"},
            {"source_id": "x", "source_name": "result", "sink_id": "same", "sink_name": "value"},
        ],
    },
}  # fmt: skip
CHILD_OUTPUTS: dict[str, list[tuple[str, str | None]]] = {
    "child-echo": [("y", None)],
    "child-text": [("t", "str"), ("same", None)],
}


@dataclass(frozen=True)
class ReviewDecision:
    """How every review of one ``human_review`` node is decided: approved as reviewed
    (``data`` None), approved with ``data`` instead, or rejected for ``reason``."""

    approved: bool
    data: Any = None
    reason: str = ""

    def output(self, reviewed: Any) -> tuple[str, Any]:
        """What the decided node yields (as the reference's review decider)."""
        if not self.approved:
            return "rejected", self.reason
        return "approved_data", reviewed if self.data is None else self.data


review_decisions = st.one_of(
    st.just(ReviewDecision(approved=True)),
    st.builds(
        lambda data: ReviewDecision(approved=True, data=data), st.one_of(scalars, small_lists)
    ),
    st.builds(lambda reason: ReviewDecision(approved=False, reason=reason), words.filter(bool)),
)

Draw = Callable[[st.SearchStrategy[Any]], Any]
Pins = list[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class Case:
    """One generated graph and how to run it."""

    definition: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    nodes_input_masks: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes_to_skip: list[str] = field(default_factory=list)
    # By review node id: how each of its reviews is decided. Each review node's ``message``
    # is its id, so that the reference's review decider knows which node asks.
    reviews: dict[str, ReviewDecision] = field(default_factory=dict)
    # The child graphs its ``agent_executor`` nodes run, by (placeholder) id.
    children: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        return json.dumps(
            {
                "definition": self.definition,
                "inputs": self.inputs,
                "nodes_input_masks": self.nodes_input_masks,
                "nodes_to_skip": self.nodes_to_skip,
                "reviews": {node_id: asdict(d) for node_id, d in self.reviews.items()},
                "children": sorted(self.children),
            },
            indent=1,
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class Out:
    """An output pin that later nodes may link from, with a guess of what it carries (kinds
    only steer the wiring towards inputs that validate; a wrong guess is harmless)."""

    node_id: str
    pin: str
    kind: str  # num, str, bool, list, dict or any
    elem: str  # the kind of its elements, for a list or dict
    position: int  # of its node in the graph
    multi: bool  # may carry more than one value in a run
    ordered: bool  # its values come from one execution, in yield order
    static: bool  # a store_value output: every link from it is static


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, str):
        return "num" if _is_number(value) else "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "any"


def common_kind(kinds: Sequence[str]) -> str:
    return kinds[0] if kinds and all(k == kinds[0] for k in kinds) else "any"


def elem_of(value: Any) -> str:
    if isinstance(value, dict):
        value = list(value.values())
    return common_kind([kind_of(v) for v in value]) if isinstance(value, list) else "any"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Builder:
    """Grows one graph node by node; each node only links from nodes built before it."""

    MAX_STREAMS = 2

    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        self.nodes: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        self.outs: list[Out] = []
        self.runs_once: dict[str, bool] = {}
        self.linked: dict[str, list[str]] = {}
        self.inputs: dict[str, Any] = {}
        self.output_names = 0
        self.streams = 0
        self.reviews: dict[str, ReviewDecision] = {}
        self.children: dict[str, dict[str, Any]] = {}

    # --- plumbing -----------------------------------------------------------------------

    def chance(self, percent: int) -> bool:
        """True ``percent`` times in 100; False in the simplest example."""
        return bool(self.draw(st.integers(0, 99)) >= 100 - percent)

    def new_node(self, block_id: str, defaults: dict[str, Any]) -> str:
        node_id = f"{PREFIXES[block_id]}{len(self.nodes)}"
        self.nodes.append({"id": node_id, "block_id": block_id, "input_default": defaults})
        self.linked[node_id] = []
        self.runs_once[node_id] = True
        return node_id

    def link(self, out: Out, sink_id: str, sink_pin: str, static: bool) -> Out:
        self.links.append(
            {
                "source_id": out.node_id,
                "source_name": out.pin,
                "sink_id": sink_id,
                "sink_name": sink_pin,
                "is_static": static and not out.static,  # a store_value link is static anyway
            }
        )
        self.linked[sink_id].append(sink_pin)
        if out.multi:
            self.runs_once[sink_id] = False
        return out

    def add_out(
        self, node_id: str, pin: str, kind: str, elem: str = "any", streams: bool = False
    ) -> Out:
        runs_once = self.runs_once[node_id]
        out = Out(
            node_id,
            pin,
            kind,
            elem,
            position=next(i for i, n in enumerate(self.nodes) if n["id"] == node_id),
            multi=streams or not runs_once,
            ordered=runs_once,
            static=self.block_of(node_id) == "store_value",
        )
        self.outs.append(out)
        return out

    def block_of(self, node_id: str) -> str:
        return next(str(n["block_id"]) for n in self.nodes if n["id"] == node_id)

    def choose(self, kinds: Sequence[str], pool: Sequence[Out], streams: int = 0) -> Out:
        """Mostly a pin of a fitting kind; sometimes any (an invalid input keeps a node
        INCOMPLETE, which both sides must agree on too). ``streams``: how often (percent) to
        prefer a multi pin, when there is one."""
        fitting = [o for o in pool if o.kind in kinds or o.kind == "any"]
        candidates = fitting if fitting and not self.chance(8) else list(pool)
        recent = [o for o in candidates if o.position >= len(self.nodes) - 4]
        if recent and self.chance(50):  # deeper graphs: streams reach further
            candidates = recent
        multi = [o for o in candidates if o.multi]
        if multi and self.chance(streams):
            candidates = multi
        return self.draw(st.sampled_from(candidates))  # type: ignore[no-any-return]

    # --- wiring (the order-independence rules of the module docstring) --------------------

    def wire(self, sink_id: str, pins: Pins) -> dict[str, Out]:
        """Link every pin of ``pins`` into ``sink_id``; which pin each one comes from."""
        if len(pins) == 1:
            pin, kinds = pins[0]
            out = self.choose(kinds, self.outs, streams=30)
            return {pin: self.link(out, sink_id, pin, static=self.chance(20))}
        drivers = [o for o in self.outs if not o.static]
        if drivers and self.chance(40):
            return self._wire_driver(sink_id, pins, drivers)
        return self._wire_ordered(sink_id, pins)

    def single_outs(self) -> list[Out]:
        return [o for o in self.outs if not o.multi]

    def _wire_ordered(self, sink_id: str, pins: Pins) -> dict[str, Out]:
        """Every pin from a node that runs once: the n-th value of each pin lands in the n-th
        execution (each fills the earliest execution lacking it), whatever the interleaving.
        Only single-valued pins may be static."""
        pool = [o for o in self.outs if not o.multi or (o.ordered and not o.static)]
        wired = {}
        for pin, kinds in pins:
            out = self.choose(kinds, pool, streams=50)
            wired[pin] = self.link(out, sink_id, pin, static=not out.multi and self.chance(25))
        return wired

    def _wire_driver(self, sink_id: str, pins: Pins, drivers: list[Out]) -> dict[str, Out]:
        """One non-static pin from anything; every other pin static and single-valued."""
        driver = self.draw(st.integers(0, len(pins) - 1))
        wired = {}
        for index, (pin, kinds) in enumerate(pins):
            if index == driver:
                out = self.choose(kinds, drivers, streams=70)
                wired[pin] = self.link(out, sink_id, pin, static=False)
            else:
                out = self.choose(kinds, self.single_outs())
                wired[pin] = self.link(out, sink_id, pin, static=True)
        return wired

    # --- sources ------------------------------------------------------------------------

    def add_source(self) -> None:
        kind = self.draw(st.sampled_from(["input", "input", "list", "dict", "store", "calc"]))
        if kind == "input":
            self.add_graph_input()
        elif kind == "list":
            values = self.draw(small_lists)
            node_id = self.new_node("create_list", {"values": values})
            self.add_list_outs(node_id, [kind_of(v) for v in values], elem_of(values))
        elif kind == "dict":
            values = self.draw(small_dicts)
            node_id = self.new_node("create_dict", {"values": values})
            self.add_dict_outs(node_id, {k: kind_of(v) for k, v in values.items()})
        elif kind == "store":
            value = self.draw(st.one_of(scalars, small_lists, small_dicts))
            node_id = self.new_node("store_value", {"input": value})
            self.add_out(node_id, "output", kind_of(value), elem_of(value))
        else:
            defaults = {
                "operation": self.draw(st.sampled_from(OPERATIONS)),
                "a": self.draw(small_ints),
                "b": self.divisor(),
            }
            node_id = self.new_node("calculator", defaults)
            self.add_out(node_id, "result", "num")
            self.maybe_handle_error(node_id)

    def divisor(self) -> int:
        """A ``b`` for the calculator: 0 often enough that divide and modulo fail."""
        return 0 if self.chance(30) else int(self.draw(st.integers(-3, 5)))

    def add_graph_input(self) -> None:
        name = f"in{len(self.nodes)}"
        value = self.draw(st.one_of(small_ints, numeric_strings, words, small_lists))
        defaults: dict[str, Any] = {"name": name}
        if self.chance(30):
            defaults["default"] = self.draw(st.one_of(small_ints, words))
            if self.chance(50):
                self.inputs[name] = value
        else:
            self.inputs[name] = value
        node_id = self.new_node("agent_input", defaults)
        given = self.inputs.get(name, defaults.get("default"))
        self.add_out(node_id, "result", kind_of(given), elem_of(given))

    def add_list_outs(self, node_id: str, kinds: list[str], elem: str) -> None:
        """``list``, and sometimes ``list_$_<i>`` (rarely ``i == len``: a missing part)."""
        self.add_out(node_id, "list", "list", elem)
        last = len(kinds) if self.chance(15) else len(kinds) - 1
        if last >= 0:
            for index in self.draw(st.lists(st.integers(0, last), max_size=2, unique=True)):
                self.add_out(node_id, f"list_$_{index}", [*kinds, "any"][index])

    def add_dict_outs(self, node_id: str, kinds: dict[str, str]) -> None:
        """``dictionary``, and sometimes ``dictionary_#_<key>`` (rarely of a missing key)."""
        self.add_out(node_id, "dictionary", "dict", common_kind(list(kinds.values())))
        known = [*kinds, "nope"] if self.chance(15) or not kinds else list(kinds)
        for key in self.draw(st.lists(st.sampled_from(known), max_size=2, unique=True)):
            self.add_out(node_id, f"dictionary_#_{key}", kinds.get(key, "any"))

    def maybe_handle_error(self, node_id: str) -> None:
        """Sometimes link the ``error`` pin (which makes a failure handled)."""
        if self.chance(20):
            self.add_output(self.add_out(node_id, "error", "str"), prefix="err")
        elif self.chance(10):
            self.add_out(node_id, "error", "str")

    # --- middle nodes -------------------------------------------------------------------

    def add_middle(self) -> None:
        choices = [
            *("calc", "calc", "cond", "template", "dict", "list", "list", "find", "store"),
            *("step", "step", "review", "child", "fan_out"),
        ]
        kind = self.draw(st.sampled_from(choices))
        if kind == "step" and self.streams >= self.MAX_STREAMS:
            kind = "calc"
        getattr(self, f"add_{kind}")()

    def add_calc(self) -> None:
        defaults: dict[str, Any] = {"operation": self.draw(st.sampled_from(OPERATIONS))}
        pins: Pins = [("a", NUM)]
        if self.chance(35):
            pins.append(("b", NUM))
        else:
            defaults["b"] = self.divisor()
        if self.chance(15):
            defaults["round_result"] = True
        node_id = self.new_node("calculator", defaults)
        self.wire(node_id, pins)
        self.add_out(node_id, "result", "num")
        self.maybe_handle_error(node_id)

    def add_cond(self) -> None:
        defaults: dict[str, Any] = {"operator": self.draw(st.sampled_from(COMPARATORS))}
        pins: Pins = [("value1", NUM)]
        if self.chance(30):
            pins.append(("value2", NUM))
        else:
            defaults["value2"] = self.draw(st.one_of(small_ints, numeric_strings))
        if self.chance(30):
            defaults["yes_value"] = self.draw(scalars)
        if self.chance(30):
            defaults["no_value"] = self.draw(scalars)
        node_id = self.new_node("condition", defaults)
        value1 = self.wire(node_id, pins)["value1"]
        self.add_out(node_id, "result", "bool")
        for pin, given in (("yes_output", "yes_value"), ("no_output", "no_value")):
            kind = kind_of(defaults[given]) if given in defaults else value1.kind
            self.add_out(node_id, pin, kind, value1.elem)
        self.maybe_handle_error(node_id)  # comparing text with a number fails

    def add_template(self) -> None:
        keys = self.draw(
            st.lists(st.sampled_from(TEMPLATE_KEYS), min_size=1, max_size=3, unique=True)
        )
        linked = [k for i, k in enumerate(keys) if i == 0 or self.chance(50)]
        placeholders = [*keys, "missing"] if self.chance(15) else keys
        defaults = {
            "format": "<" + "|".join("{" + k + "}" for k in placeholders) + ">",
            "values": {k: self.draw(scalars) for k in keys if k not in linked},
        }
        node_id = self.new_node("fill_text_template", defaults)
        self.wire(node_id, [(f"values_#_{k}", ANY) for k in linked])
        self.add_out(node_id, "output", "str")
        self.maybe_handle_error(node_id)

    def add_dict(self) -> None:
        keys = self.draw(st.lists(st.sampled_from(DICT_KEYS), min_size=1, max_size=3, unique=True))
        node_id = self.new_node("create_dict", {})
        wired = self.wire(node_id, [(f"values_#_{k}", ANY) for k in sorted(keys)])
        self.add_dict_outs(node_id, {pin.split("_#_")[1]: out.kind for pin, out in wired.items()})

    def add_list(self) -> None:
        indices = sorted(
            self.draw(st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True))
        )
        base: list[Any] = self.draw(small_lists) if self.chance(25) else []
        node_id = self.new_node("create_list", {"values": base} if base else {})
        wired = self.wire(node_id, [(f"values_$_{i}", ANY) for i in indices])
        kinds = [kind_of(v) for v in base]
        kinds += ["str"] * (max(indices) + 1 - len(kinds))  # a gap is filled with ""
        for pin, out in wired.items():
            kinds[int(pin.split("_$_")[1])] = out.kind
        self.add_list_outs(node_id, kinds, common_kind(kinds))

    def add_find(self) -> None:
        defaults: dict[str, Any] = {}
        pins: Pins = [("input", CONTAINER)]
        if self.chance(25):
            pins.append(("key", ("num", "str")))
        else:
            keys = st.one_of(st.sampled_from([*DICT_KEYS, "nope"]), st.integers(-1, 3))
            defaults["key"] = self.draw(keys)
        node_id = self.new_node("find_in_dict", defaults)
        container = self.wire(node_id, pins)["input"]
        self.add_out(node_id, "output", container.elem)
        self.add_out(node_id, "missing", container.kind, container.elem)

    def add_store(self) -> None:
        defaults: dict[str, Any] = {}
        if self.chance(30):
            defaults["data"] = self.draw(scalars)
        node_id = self.new_node("store_value", defaults)
        given = self.wire(node_id, [("input", ANY)])["input"]
        if defaults:
            self.add_out(node_id, "output", kind_of(defaults["data"]))
        else:
            self.add_out(node_id, "output", given.kind, given.elem)

    def add_step(self) -> None:
        self.streams += 1
        node_id = self.new_node("step_through_items", {})
        items = self.wire(node_id, [("items", CONTAINER)])["items"]
        key_kind = {"list": "num", "dict": "str"}.get(items.kind, "any")
        self.add_out(node_id, "key", key_kind, streams=True)
        self.add_out(node_id, "item", items.elem, streams=True)

    def add_review(self) -> None:
        """A ``human_review`` of anything, decided as drawn: approved as is, approved with
        other data, or rejected."""
        node_id = self.new_node("human_review", {})
        self.nodes[-1]["input_default"]["message"] = node_id
        reviewed = self.wire(node_id, [("data", ANY)])["data"]
        decision = self.draw(review_decisions)
        self.reviews[node_id] = decision
        if decision.data is None:
            self.add_out(node_id, "approved_data", reviewed.kind, reviewed.elem)
        else:
            self.add_out(node_id, "approved_data", kind_of(decision.data), elem_of(decision.data))
        self.add_out(node_id, "rejected", "str")

    def add_child(self) -> None:
        """An ``agent_executor`` running one of ``CHILD_GRAPHS`` on its input ``x``."""
        graph_id = self.draw(st.sampled_from(sorted(CHILD_GRAPHS)))
        self.children[graph_id] = CHILD_GRAPHS[graph_id]
        node_id = self.new_node("agent_executor", {"graph_id": graph_id})
        given = self.wire(node_id, [("inputs_#_x", ANY)])["inputs_#_x"]
        for name, kind in CHILD_OUTPUTS[graph_id]:
            self.add_out(node_id, name, kind or given.kind, "any" if kind else given.elem)

    def add_fan_out(self) -> None:
        """A calculator run once per element of its list input ``b`` (SPEC §8.3): a list from
        the graph, or small numbers dividing ``a``, one of them 0: that element fails."""
        if self.chance(30):
            values = self.draw(st.lists(st.integers(1, 3), max_size=3))
            values.insert(self.draw(st.integers(0, len(values))), 0)  # that element fails
            numbers = self.add_out(
                self.new_node("create_list", {"values": values}), "list", "list", "num"
            )
            node_id = self.new_node(
                "calculator", {"operation": "divide", "a": self.draw(small_ints)}
            )
            self.link(numbers, node_id, "b", static=False)
        else:
            defaults = {
                "operation": self.draw(st.sampled_from(OPERATIONS)),
                "a": self.draw(small_ints),
            }
            node_id = self.new_node("calculator", defaults)
            self.wire(node_id, [("b", ("list",))])
        self.nodes[-1]["fan_out"] = "b"
        self.add_out(node_id, "result", "list", "num")
        self.maybe_handle_error(node_id)

    # --- sinks --------------------------------------------------------------------------

    def add_output(self, out: Out, prefix: str = "out") -> None:
        defaults: dict[str, Any] = {"name": f"{prefix}{self.output_names}"}
        self.output_names += 1
        if self.chance(10):
            defaults["format"] = "v={value}"
        elif self.chance(5):
            defaults["format"] = "{nope}"  # a bad template: the output node fails
        node_id = self.new_node("agent_output", defaults)
        self.link(out, node_id, "value", static=self.chance(10))

    def add_sinks(self) -> None:
        """An output for each node nothing reads yet (up to three), and maybe a random one."""
        used = {link["source_id"] for link in self.links}
        dangling = [
            o
            for o in self.outs
            if o.node_id not in used
            and o.pin != "error"
            and self.block_of(o.node_id) != "agent_output"
        ]
        seen: set[str] = set()
        for out in reversed(dangling):
            if out.node_id not in seen and len(seen) < 3:
                seen.add(out.node_id)
                self.add_output(out)
        if not seen or self.chance(30):
            self.add_output(self.choose(ANY, self.outs))

    # --- masks and skips ----------------------------------------------------------------

    MASKABLE: ClassVar[dict[str, list[tuple[str, st.SearchStrategy[Any]]]]] = {
        "calculator": [
            ("operation", st.sampled_from(OPERATIONS)),
            ("b", st.integers(-3, 5)),
            ("a", small_ints),
        ],
        "condition": [("operator", st.sampled_from(COMPARATORS)), ("value2", small_ints)],
        "agent_input": [("value", st.one_of(small_ints, words))],
        "agent_output": [("format", st.just("m={value}"))],
        "store_value": [("data", scalars)],
        "find_in_dict": [("key", st.sampled_from(DICT_KEYS))],
    }

    def masks(self) -> dict[str, dict[str, Any]]:
        """Sometimes a mask or two; a linked pin only on a node with a single linked pin."""
        masks: dict[str, dict[str, Any]] = {}
        while self.chance(20 if not masks else 10):
            node = self.draw(st.sampled_from(self.nodes))
            linked = self.linked[node["id"]]
            pins = [
                (pin, values)
                for pin, values in self.MASKABLE.get(node["block_id"], [])
                if pin not in linked or len(linked) == 1
            ]
            if pins:
                pin, values = self.draw(st.sampled_from(pins))
                masks.setdefault(node["id"], {})[pin] = self.draw(values)
        return masks

    def skips(self) -> list[str]:
        if not self.chance(15):
            return []
        ids = [str(n["id"]) for n in self.nodes]
        skipped = self.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2, unique=True))
        return sorted(skipped)

    def case(self) -> Case:
        masks = self.masks()
        skips = self.skips()
        definition = {"name": "differential", "nodes": self.nodes, "links": self.links}
        self.unsubmit_refused_inputs(definition, masks, skips)
        return Case(definition, self.inputs, masks, skips, self.reviews, self.children)

    def unsubmit_refused_inputs(
        self, definition: dict[str, Any], masks: dict[str, dict[str, Any]], skips: list[str]
    ) -> None:
        """Submission refuses a graph input that cannot validate on a pin it feeds (SPEC
        §3.3): such a value becomes its input node's ``default`` instead, so that it still
        reaches the pin at run time (where the node fails, on both sides alike)."""
        graph = Graph.model_validate({**definition, "id": "g", "version": 1, "user_id": "u"})
        for node in self.nodes:
            name = node["input_default"].get("name")
            if node["block_id"] != "agent_input" or name not in self.inputs:
                continue
            spec = RunSpec(graph, REGISTRY.get, {name: self.inputs[name]}, masks, frozenset(skips))
            if graph_input_problems(spec):
                node["input_default"]["default"] = self.inputs.pop(name)


@st.composite
def graph_cases(draw: Draw, max_middle: int = 9) -> Case:
    """A random valid graph of built-in blocks, its inputs, masks and skips."""
    builder = Builder(draw)
    for _ in range(draw(st.integers(1, 3))):
        builder.add_source()
    for _ in range(draw(st.integers(1, max_middle))):
        builder.add_middle()
    builder.add_sinks()
    return builder.case()
