"""Suspension kinds (SPEC §8): a node that suspends leaves the worker and waits, then resumes
from the database as if its block had yielded what the resumption gives.

``registry`` holds the ``SuspensionKind`` protocol and the registry the engine looks a kind up
in by the ``Suspend`` value's type; ``resume`` ends a suspended node; each kind is one module:
``review`` (a human decision, REVIEW), ``child_run`` (a child execution, WAITING) and
``fan_out`` (the node's block run once per element of a list, WAITING). A new kind is a new
module that registers itself; the node task, the dataflow store, finalize and the reference
interpreter name no kind.
"""
