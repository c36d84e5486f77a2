"""A block's run, written once for the node task (``engine.node_execution``), a fan-out
element (``engine.suspensions.fan_out``) and the reference interpreter (``reference``):

- ``iteration``: driving the block's sync or async generator under its time limit and stops;
- ``run``: one run's outputs, each checked (JSON, size), its log context, what the block raised;
- ``failures``: how a run that raised ends (stopped, superseded, retried, failed), its message;
- ``watch``: the stop watch that interrupts a running block, asking the caller's hook.
"""
