"""The `lepton` command: runs Lepton manifests locally and validates them offline.

It sits on top of both the operator's API (to read manifests and render the runtime contract
exactly as the operator does) and the runtime (to do the work), which is why it is a package
of its own: the runtime never imports the operator.
"""
