"""dagnats.worker."""
