"""dagnats.engine."""
