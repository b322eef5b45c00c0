"""The operator side: the `indexer` CLI, the driver that wires a run together, Ray Jobs."""
