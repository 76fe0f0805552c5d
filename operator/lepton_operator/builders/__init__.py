"""Pure functions that render the children of Lepton resources (no I/O, no Kubernetes client)."""
