"""Lepton runtime: the code inside Lepton pods (train, compress, package, serve), also local."""
