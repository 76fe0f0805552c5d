"""LeptonSearch's own logic: its space, its trial table, and the sampler behind it."""
