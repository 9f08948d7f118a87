"""dagnats.api."""
