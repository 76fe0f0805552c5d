"""GPU node-pool inventory, gang-aware admission and placement policies (pure, no I/O)."""
