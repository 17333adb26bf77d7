"""Tracing frontend, pass manager, passes and the compile driver."""
