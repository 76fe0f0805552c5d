"""Entry point: `lepton-operator` (or `kopf run -m lepton_operator.main`).

Importing this module registers every handler with Kopf.
"""

from __future__ import annotations

import argparse

import kopf

# Each import registers that module's handlers with Kopf.
from lepton_operator.handlers import (  # noqa: F401
    children,
    compression,
    endpoint,
    lifecycle,
    search,
    training,
)
from lepton_operator.handlers.context import settings


def cli(argv: list[str] | None = None) -> None:
    """Run the operator in the foreground against the cluster of the current kubeconfig."""
    parser = argparse.ArgumentParser(prog="lepton-operator", description=__doc__)
    parser.add_argument(
        "--peering",
        action="store_true",
        help="coordinate with other replicas through Kopf peering (default: standalone)",
    )
    args = parser.parse_args(argv)
    config = settings()
    namespaces = config.namespaces
    kopf.configure(verbose=config.log_level == "DEBUG")
    kopf.run(
        standalone=not args.peering,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{config.bind_address}:{config.health_port}/healthz",
    )


if __name__ == "__main__":
    cli()
