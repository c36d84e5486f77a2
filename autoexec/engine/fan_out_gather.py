"""The callback of a fan-out's chord (SPEC §8.3): the node yields each output pin gathered
over its elements, in element order, once; or fails naming the first failed element."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from autoexec.engine.context import Engine
from autoexec.engine.suspension import Resumption, resume_node
from autoexec.errors import InvalidTransitionError
from autoexec.fan_out_results import failed_element_error, gathered

log = logging.getLogger(__name__)


def gather(
    engine: Engine, results: Sequence[Mapping[str, Any]], node_exec_id: int, graph_exec_id: str
) -> None:
    """The chord's callback: the node yields each output pin gathered over the elements, or
    fails with the first failed element's index. A node that no longer waits (its run was
    cancelled, or a copy of this callback came first) is left as it is."""
    resumption = resumption_of(results, engine.settings.max_output_bytes)
    try:
        resume_node(engine, graph_exec_id, node_exec_id, lambda session: resumption)
    except InvalidTransitionError as refused:
        log.info("fan-out of node execution %s not resumed: %s", node_exec_id, refused)


def resumption_of(results: Sequence[Mapping[str, Any]], max_bytes: int) -> Resumption:
    ordered = sorted(results, key=lambda result: int(result["index"]))
    failed = next((r for r in ordered if r.get("error") is not None), None)
    if failed is not None:
        return Resumption(error=failed_element_error(int(failed["index"]), str(failed["error"])))
    outputs = gathered([r["outputs"] for r in ordered])
    for pin, values in outputs:
        size = len(json.dumps(values))
        if size > max_bytes:
            return Resumption(
                error=f"fan-out output {pin!r} is {size} bytes, over the limit of {max_bytes} "
                "(AUTOEXEC_MAX_OUTPUT_BYTES)"
            )
    return Resumption(outputs)
