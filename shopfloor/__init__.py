"""The `shopfloor` command: runs and wires the simulator, connectors, historian and analytics."""
