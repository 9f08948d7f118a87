"""dagnats.cli."""
