"""An input campaign on the real API server with the operator running.

500 generated manifests per kind (e2e/schema_manifests.py: wrong types, values past bounds,
unknown fields, huge and non-ASCII strings, missing fields), plus references between them:
to resources that do not exist, to each other, and in cycles (a compression of itself, two
compressions of each other, an endpoint serving one of them). Each is either refused at
admission with a message that names the field, or accepted and given a status with a reason
by the operator. The operator logs no traceback, and a valid job applied afterwards still
runs. A ResourceQuota keeps the accepted ones from starting a thousand simulated pods; the
quota's refusals are reasons too. The counts go to e2e/.cluster/logs/input-campaign.json.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from kubernetes.client.exceptions import ApiException

from e2e.lepton_operator_process import LOG_DIR, OperatorProcess
from e2e.lepton_resources import GROUP, PLURALS, VERSION, create, pipeline, wait_for_phase
from e2e.schema_manifests import near_miss, spec_schema
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

PER_KIND = 500
SHORT = {"LeptonTrainingJob": "t", "LeptonCompression": "c", "LeptonEndpoint": "e"}
QUOTA = {"pods": "40", "requests.cpu": "400", "requests.nvidia.com/gpu": "16"}


def generated_specs(kind: str, count: int) -> list[Any]:
    """`count` specs drawn by hypothesis, the same ones on every run."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=near_miss(spec_schema(kind)))
    def collect(spec: Any) -> None:
        drawn.append(copy.deepcopy(spec))

    collect()
    return drawn


def with_references(kind: str, index: int, spec: Any) -> Any:
    """Point some sources at other generated resources: existing, missing, or in a cycle."""
    if kind == "LeptonTrainingJob" or not isinstance(spec, dict) or index % 5:
        return spec
    if kind == "LeptonCompression":
        # c-0 -> c-5 -> c-0, c-10 -> c-15 -> c-10, ...: pairs of compressions of each other.
        partner = index + 5 if index % 10 == 0 else index - 5
        return {**spec, "source": {"compressionRef": {"name": f"c-{partner}"}}}
    target = f"c-{index}" if index % 10 else f"t-{index}"  # a compression on a cycle, or none
    return {**spec, "source": {"compressionRef": {"name": target}}}


def manifests() -> list[dict[str, Any]]:
    documents = []
    for kind, short in SHORT.items():
        for index, spec in enumerate(generated_specs(kind, PER_KIND)):
            documents.append({
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": kind,
                "metadata": {"name": f"{short}-{index}"},
                "spec": with_references(kind, index, spec),
            })  # fmt: skip
    # A compression of itself.
    documents.append({
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LeptonCompression",
        "metadata": {"name": "self-loop"},
        "spec": {"source": {"compressionRef": {"name": "self-loop"}},
                 "output": {"uri": "pvc://artifacts/self-loop"}},
    })  # fmt: skip
    return documents


def submit(custom: Any, namespace: str, manifest: dict[str, Any]) -> tuple[str, str | None]:
    """(name, None) when accepted, else (name, the API server's message)."""
    kind = manifest["kind"]
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], manifest, field_validation="Strict"
        )
    except ApiException as refused:
        if refused.status not in (400, 422):
            raise
        return manifest["metadata"]["name"], str(json.loads(refused.body or "{}").get("message"))
    return manifest["metadata"]["name"], None


def status_reason(obj: dict[str, Any]) -> str | None:
    """The reason its status gives (the Ready condition's), once it has one."""
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    if not status.get("phase") or ready is None or not ready.get("reason"):
        return None
    return str(ready["reason"])


def test_generated_manifests_are_refused_naming_the_field_or_get_a_status_with_a_reason(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "campaign"}, "spec": {"hard": QUOTA}}
    )
    documents = manifests()
    log_before = operator.log_path.read_text(errors="replace")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda m: submit(custom, namespace, m), documents))
    created_in = time.monotonic() - started
    kinds = {m["metadata"]["name"]: m["kind"] for m in documents}
    refused = {name: message for name, message in answers if message is not None}
    accepted = [name for name, message in answers if message is None]
    # A refusal names the field it is about (`spec.resources.workers: Invalid value ...`).
    unnamed = {name: message for name, message in refused.items() if "spec" not in message}
    assert unnamed == {}

    seen: dict[str, float] = {}
    reasons: Counter[str] = Counter()

    def every_accepted_one_has_a_reason() -> bool:
        for kind, plural in PLURALS.items():
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
            for obj in listed["items"]:
                name = obj["metadata"]["name"]
                reason = status_reason(obj)
                if reason is not None and name not in seen and kinds.get(name) == kind:
                    seen[name] = time.monotonic() - started
                    reasons[f"{kind}/{reason}"] += 1
        return all(name in seen for name in accepted)

    wait_until(
        "a status with a reason on every accepted resource",
        every_accepted_one_has_a_reason,
        timeout=300,
        interval=3,
        describe_state=lambda: sorted(set(accepted) - set(seen))[:10],
    )
    cycles = [
        status_reason(custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS["LeptonCompression"], name))
        for name in ("self-loop", "c-0", "c-5")
        if name in accepted
    ]  # fmt: skip
    new_log = operator.log_path.read_text(errors="replace")[len(log_before) :]
    tracebacks = new_log.count("Traceback (most recent call last)")
    summary = {
        "manifests": len(documents),
        "refused_at_admission": len(refused),
        "refused_without_naming_a_field": len(unnamed),
        "accepted": len(accepted),
        "accepted_without_a_reason": len([n for n in accepted if n not in seen]),
        "create_seconds": round(created_in, 1),
        "status_later_than_30s_after_campaign_start": sum(1 for t in seen.values() if t > 30),
        "slowest_status_seconds": round(max(seen.values(), default=0.0), 1),
        "reasons": dict(sorted(reasons.items())),
        "operator_tracebacks": tracebacks,
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "input-campaign.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    assert tracebacks == 0, f"see {operator.log_path}"
    # Whatever the API server accepted, it also accepts the children of (one schema, one truth).
    assert not [reason for reason in reasons if reason.endswith("/ChildrenRejected")], reasons
    assert all(reason == "SourceCycle" for reason in cycles), cycles
    assert len(refused) > 0 and len(accepted) > 0

    # Other resources keep reconciling: a valid job applied now still runs to the end.
    core.delete_namespaced_resource_quota("campaign", namespace)
    canary = pipeline()[0]
    canary["metadata"] = {"name": "canary"}
    create(custom, namespace, canary)
    wait_for_phase(custom, "LeptonTrainingJob", namespace, "canary", "Succeeded")
    delete_all(custom, namespace)


def delete_all(custom: Any, namespace: str) -> None:
    """While the operator runs (it removes its finalizers), so the namespace can go."""
    for plural in PLURALS.values():
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    wait_until(
        "every Lepton resource of the campaign deleted",
        lambda: (
            not any(
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
                for plural in PLURALS.values()
            )
        ),
        timeout=300,
    )
