"""REST routes of the head, one module per area."""
