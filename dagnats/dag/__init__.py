"""dagnats.dag."""
