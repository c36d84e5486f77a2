"""The store: all SQL of autoexec (tables, transitions, executions, graphs, credits ...)."""
