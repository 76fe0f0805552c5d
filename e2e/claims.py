"""PersistentVolumeClaims that pvc:// URIs name, bound to hostPath volumes in the e2e cluster.

kwok runs no kubelet, so nothing is ever mounted: the volumes only have to exist and be bound
for kube-scheduler to place the pods that use them.
"""

from __future__ import annotations

from typing import Any

SAMPLE_CLAIMS = ("datasets", "artifacts")


def volume_name(namespace: str, claim: str) -> str:
    return f"{namespace}-{claim}"


def create_bound_claims(
    core: Any, namespace: str, claims: tuple[str, ...] = SAMPLE_CLAIMS
) -> list[str]:
    """Create each claim pre-bound to its own PersistentVolume; returns the volumes' names."""
    volumes = []
    for claim in claims:
        volume = volume_name(namespace, claim)
        core.create_persistent_volume(
            {
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "hostPath": {"path": f"/tmp/lepton-e2e/{volume}"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            }
        )
        volumes.append(volume)
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "10Gi"}},
                },
            },
        )
    return volumes
