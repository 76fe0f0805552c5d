"""Status derivation as tables: what the children report -> phase, conditions, results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lepton_operator.api.base import Condition
from lepton_operator.builders.runtime_config import StorageLayout
from lepton_operator.observe import (
    first_replica_message,
    observe_deployment,
    observe_pytorchjob,
    pytorchjob_finished,
)
from lepton_operator.status import (
    Blocker,
    DeploymentObservation,
    JobObservation,
    ObservedCondition,
    compression_results,
    derive_endpoint_core,
    derive_job_core,
    parse_summary,
    preempted_conditions,
    preemption_message,
    set_condition,
    training_results,
    transition_event,
)
from lepton_runtime.contract import CompressSummary, TrainSummary, Trial

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _pytorchjob(*conditions: tuple[str, str]) -> JobObservation:
    return JobObservation(
        pytorchjob_exists=True,
        pytorchjob_conditions=tuple(ObservedCondition(t, s) for t, s in conditions),
    )


def _by_type(conditions: list[Condition]) -> dict[str, str]:
    return {c.type: c.status for c in conditions}


@pytest.mark.parametrize(
    ("observation", "phase"),
    [
        (JobObservation(), "Pending"),
        (_pytorchjob(("Created", "True")), "Pending"),
        (_pytorchjob(("Created", "True"), ("Running", "True")), "Running"),
        (_pytorchjob(("Running", "False"), ("Restarting", "True")), "Running"),
        (_pytorchjob(("Running", "False"), ("Succeeded", "True")), "Succeeded"),
        (_pytorchjob(("Running", "True"), ("Failed", "True")), "Failed"),
        (_pytorchjob(("Suspended", "True")), "Suspended"),
        (JobObservation(blocker=Blocker("WaitingForSource", "waiting")), "Pending"),
        (JobObservation(blocker=Blocker("SourceFailed", "it failed", "Failed")), "Failed"),
    ],
)
def test_job_phase_table(observation: JobObservation, phase: str) -> None:
    assert derive_job_core([], 1, observation, T0).phase == phase


def test_succeeded_job_publishes_conditions_for_kubectl_wait() -> None:
    core = derive_job_core([], 3, _pytorchjob(("Succeeded", "True")), T0)
    assert _by_type(core.conditions) == {
        "Ready": "True",
        "Running": "False",
        "Succeeded": "True",
        "Failed": "False",
    }
    assert all(c.observed_generation == 3 for c in core.conditions)


def test_blocked_job_says_why_in_ready_condition() -> None:
    blocker = Blocker("SourceNotFound", "LeptonTrainingJob 'x' does not exist")
    core = derive_job_core([], 1, JobObservation(blocker=blocker), T0)
    ready = next(c for c in core.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "SourceNotFound")
    assert core.message == blocker.message


def test_failure_message_from_the_runtime_wins_over_the_generic_one() -> None:
    observation = JobObservation(
        pytorchjob_exists=True,
        pytorchjob_conditions=(ObservedCondition("Failed", "True", "JobFailed", "job failed"),),
        failure_message="loss became NaN at step 12",
    )
    assert derive_job_core([], 1, observation, T0).message == "loss became NaN at step 12"


def test_transition_time_moves_only_when_status_flips() -> None:
    first = set_condition(
        [], "Ready", status="False", reason="A", message="a", generation=1, now=T0
    )
    same = set_condition(
        first, "Ready", status="False", reason="B", message="b", generation=2, now=T1
    )
    flipped = set_condition(
        same, "Ready", status="True", reason="C", message="c", generation=2, now=T1
    )
    assert same[0].last_transition_time == T0 and same[0].reason == "B"
    assert flipped[0].last_transition_time == T1
    assert len(flipped) == 1


def test_recomputing_from_the_same_observation_changes_nothing() -> None:
    observation = _pytorchjob(("Running", "True"))
    first = derive_job_core([], 1, observation, T0)
    again = derive_job_core(first.conditions, 1, observation, T1)
    assert again.conditions == first.conditions


@pytest.mark.parametrize(
    ("observation", "phase", "available"),
    [
        (DeploymentObservation(), "Pending", None),
        (DeploymentObservation(exists=True, desired_replicas=2), "Progressing", "False"),
        (
            DeploymentObservation(
                exists=True, desired_replicas=2, ready_replicas=1, updated_replicas=2
            ),
            "Available",
            "True",
        ),
        (
            DeploymentObservation(
                exists=True, desired_replicas=2, ready_replicas=2, updated_replicas=2
            ),
            "Available",
            "True",
        ),
        (
            DeploymentObservation(
                exists=True,
                desired_replicas=2,
                ready_replicas=1,
                updated_replicas=1,
                conditions=(
                    ObservedCondition("Progressing", "False", "ProgressDeadlineExceeded", "stuck"),
                ),
            ),
            "Degraded",
            "True",
        ),
        (DeploymentObservation(blocker=Blocker("WaitingForSource", "w")), "Pending", "False"),
        (DeploymentObservation(blocker=Blocker("SourceFailed", "f", "Failed")), "Failed", "False"),
        (
            DeploymentObservation(blocker=Blocker("InsufficientGPUs", "q", "Queued", 2)),
            "Queued",
            "False",
        ),
    ],
)
def test_endpoint_phase_table(
    observation: DeploymentObservation, phase: str, available: str | None
) -> None:
    core = derive_endpoint_core([], 1, observation, T0)
    assert core.phase == phase
    assert _by_type(core.conditions).get("Available") == available


def test_rollout_in_progress_keeps_serving_and_says_progressing() -> None:
    observation = DeploymentObservation(
        exists=True, desired_replicas=2, ready_replicas=2, updated_replicas=1
    )
    conditions = _by_type(derive_endpoint_core([], 2, observation, T0).conditions)
    assert conditions["Available"] == "True" and conditions["Progressing"] == "True"


SUMMARY = TrainSummary(
    accuracy=0.991,
    loss=0.03,
    epochs=3,
    steps=375,
    samples_per_second=812.5,
    world_size=2,
    model_uri="file:///mnt/lepton/pvc/artifacts/mnist",
    last_checkpoint="/mnt/lepton/pvc/artifacts/mnist/checkpoints/checkpoint.pt",
)


def test_training_results_speak_user_uris() -> None:
    results = training_results(SUMMARY, "pvc://artifacts/mnist", StorageLayout("/mnt/lepton/pvc"))
    assert results.accuracy == 0.991
    assert results.model_uri == "pvc://artifacts/mnist"
    assert results.last_checkpoint == "pvc://artifacts/mnist/checkpoints/checkpoint.pt"
    assert results.resumed_from_step is None  # started from scratch: nothing to report


def test_training_results_say_which_checkpoint_the_final_run_resumed_from() -> None:
    resumed = SUMMARY.model_copy(update={"resumed_from_step": 120})
    results = training_results(resumed, "pvc://artifacts/mnist", StorageLayout("/mnt/lepton/pvc"))
    assert results.model_dump(by_alias=True, exclude_none=True)["resumedFromStep"] == 120


KEPT_INT8 = Trial(
    index=0,
    sparsity=0.8,
    quantization="dynamic-int8",
    size_bytes=100_000,
    accuracy=0.988,
    accuracy_drop=0.003,
    latency_ms=0.4,
    kept=True,
    reason="within the guard",
)
INT8_SUMMARY = CompressSummary(
    baseline_accuracy=0.991,
    final_accuracy=0.988,
    size_bytes_before=1_200_000,
    size_bytes_after=100_000,
    sparsity=0.8,
    latency_ms_before=0.9,
    latency_ms_after=0.4,
    quantization="dynamic-int8",
    trials=[KEPT_INT8],
    model_uri="file:///x",
    formats=["model.ts"],
)


def test_compression_results_report_points_and_ratio() -> None:
    results = compression_results(INT8_SUMMARY, "pvc://artifacts/c")
    assert results.accuracy_drop == pytest.approx(0.3)
    assert results.size_ratio == 12.0
    assert results.trials[0].kept and results.model_uri == "pvc://artifacts/c"
    assert results.file_sizes is None and results.codebook_bits is None  # an older runtime's


def test_codebook_results_carry_both_files_and_the_weight_counts() -> None:
    trial = KEPT_INT8.model_copy(
        update={"quantization": "codebook", "codebook_bits": 5, "size_bytes": 24_000}
    )
    summary = INT8_SUMMARY.model_copy(
        update={
            "size_bytes_after": 24_000,
            "quantization": "codebook",
            "codebook_bits": 5,
            "parameters": 278_000,
            "nonzero_parameters": 13_900,
            "file_sizes": {"model.lpc": 24_000, "model.ts": 300_000},
            "trials": [trial],
            "formats": ["model.lpc", "model.ts"],
        }
    )
    results = compression_results(summary, "pvc://artifacts/c")
    assert results.size_ratio == 50.0  # of the compact file, what the python backend serves
    assert results.file_sizes == {"model.lpc": 24_000, "model.ts": 300_000}
    assert (results.parameters, results.nonzero_parameters) == (278_000, 13_900)
    assert results.codebook_bits == 5 and results.trials[0].codebook_bits == 5
    dumped = results.model_dump(by_alias=True, exclude_none=True)
    assert dumped["fileSizes"]["model.lpc"] == 24_000 and dumped["nonzeroParameters"] == 13_900


def test_summary_parsing_tolerates_a_plain_failure_reason() -> None:
    assert parse_summary("dataset not found: /data", TrainSummary) is None
    assert parse_summary(None, TrainSummary) is None
    assert parse_summary(SUMMARY.to_wire(), TrainSummary) == SUMMARY


def test_phase_events_warn_on_failure_and_stay_quiet_without_change() -> None:
    assert transition_event("Running", "Running", "x") is None
    assert transition_event("Running", "Failed", "boom") == ("Warning", "Failed", "boom")
    assert transition_event(None, "Pending", "new") == ("Normal", "Pending", "new")


def _pod(name: str, replica_type: str, index: str, message: str | None) -> dict[str, object]:
    terminated = {"exitCode": 0, "message": message} if message else None
    return {
        "metadata": {
            "name": name,
            "labels": {
                "training.kubeflow.org/replica-type": replica_type,
                "training.kubeflow.org/replica-index": index,
            },
        },
        "status": {"containerStatuses": [{"name": "pytorch", "state": {"terminated": terminated}}]},
    }


def test_results_come_from_the_master_pod() -> None:
    pods = [_pod("w0", "worker", "0", "worker says"), _pod("m0", "master", "0", "master says")]
    assert first_replica_message(pods, "pytorch") == "master says"
    assert first_replica_message([_pod("w0", "worker", "0", None)], "pytorch") is None


def test_pytorchjob_view_reads_conditions_and_active_replicas() -> None:
    pytorchjob = {
        "metadata": {"name": "mnist"},
        "status": {
            "conditions": [
                {"type": "Created", "status": "True"},
                {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"},
            ],
            "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 3}},
            "startTime": "2026-11-26T10:00:00Z",
        },
    }
    observation = observe_pytorchjob(pytorchjob, None, None)
    assert observation.active_workers == 4
    assert observation.start_time == T0
    assert pytorchjob_finished(pytorchjob)
    assert not pytorchjob_finished(None)


def test_deployment_view_notices_an_unobserved_generation() -> None:
    deployment = {
        "metadata": {"generation": 4},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 3, "readyReplicas": 2, "updatedReplicas": 2},
    }
    observation = observe_deployment(deployment, None)
    assert not observation.generation_observed
    assert observation.desired_replicas == 2


def test_a_preempted_job_says_so_while_queued_and_is_readmitted_after() -> None:
    running = derive_job_core([], 1, _pytorchjob(("Running", "True")), T0).conditions
    evicted = preempted_conditions(running, 1, "preempted by LeptonTrainingJob team/high", T1)
    assert _by_type(evicted)["Preempted"] == "True"
    assert _by_type(evicted)["Admitted"] == "False"
    queued = Blocker("InsufficientGPUs", "4 workers x 8 GPUs do not fit", "Queued", 1)
    waiting = derive_job_core(evicted, 1, JobObservation(blocker=queued), T1)
    assert waiting.phase == "Queued"
    assert _by_type(waiting.conditions)["Preempted"] == "True"  # kept while it waits
    again = JobObservation(pytorchjob_exists=True, pool="a100")
    readmitted = derive_job_core(waiting.conditions, 1, again, T1)
    preempted = next(c for c in readmitted.conditions if c.type == "Preempted")
    assert (preempted.status, preempted.reason) == ("False", "Readmitted")
    assert "team/high" in preempted.message
    assert _by_type(readmitted.conditions)["Admitted"] == "True"


def test_a_preemption_message_says_who_and_whether_the_job_resumes() -> None:
    resumed = preemption_message("LeptonTrainingJob team/high", 1000, resumes=True)
    assert resumed == (
        "preempted by LeptonTrainingJob team/high (priority 1000); queued again, it resumes "
        "from its newest checkpoint when admitted again"
    )
    why = "checkpoints need a pvc:// output"
    assert preemption_message("x", 1, resumes=why).endswith(
        f"starts over when admitted again ({why})"
    )
    assert preemption_message("x", 1, resumes=False).endswith("starts over when admitted again")
