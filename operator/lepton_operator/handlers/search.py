"""LeptonSearch -> trial LeptonTrainingJobs, chosen by Optuna, reported in one trial table.

Kopf's handlers only mark the search in the status refresh queue; the queue's worker is the
one place that decides its trials (handlers/refresh.py), so a search is never decided by two
threads at once, and the trials' watch (services/trials.py) marks it the same way.
"""

from __future__ import annotations

import logging
from functools import cache, partial
from typing import Any

import kopf
from pydantic import ValidationError

from lepton_operator import k8s
from lepton_operator.api.base import API_GROUP, API_VERSION, GROUP_VERSION
from lepton_operator.api.search import LeptonSearch, SearchStatus, SearchTrial
from lepton_operator.builders.search import render_trial
from lepton_operator.handlers.context import instrumented, now, publish_status
from lepton_operator.handlers.refresh import REFRESH, status_refresh_queue
from lepton_operator.scheduling.views import foreign_controller
from lepton_operator.search import sampler
from lepton_operator.search.halving import job_name
from lepton_operator.search.plan import plan_search
from lepton_operator.search.space import space_problem
from lepton_operator.services.trials import SearchKey, TrialStore
from lepton_operator.status import ConditionBook, clipped

PLURAL = "leptonsearches"
SEARCH = "LeptonSearch"
log = logging.getLogger(__name__)


def _mark(key: SearchKey) -> None:
    status_refresh_queue().mark((SEARCH, *key))


@cache
def trial_store() -> TrialStore:
    return TrialStore(_mark)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_search(body: kopf.Body, **_: Any) -> None:
    """Mark the search: the refresh queue's worker decides its trials."""
    _mark((str(body["metadata"]["namespace"]), str(body["metadata"]["name"])))


def refresh_search_status(body: dict[str, Any], *, child: dict[str, Any] | None = None) -> None:
    """Bring the trial table up to date, record the trials to add, then create them."""
    del child  # the trials come from the store, which the watch keeps current
    with instrumented(SEARCH):
        search = LeptonSearch.model_validate(body)
        previous = search.status
        # Once trials exist, the API server keeps the space as it was: nothing to check again.
        problem = None if previous and previous.trials else space_problem(search.spec)
        if problem is not None:
            _publish_invalid(body, search, problem)
            return
        store = trial_store()
        if not store.wait_ready():
            raise RuntimeError("the watch of LeptonTrainingJobs has not listed them yet")
        meta = search.metadata
        plan = plan_search(
            search,
            store.of(meta.namespace, meta.name),
            propose=partial(sampler.propose, search.spec),
            front=partial(sampler.pareto_front, search.spec),
            now=now(),
        )
        # The table first: a trial is on record before its training job exists.
        publish_status(body, previous, plan.status, plan.status.phase)
        refused = _create_trials(search, plan.create)
        if refused:
            # Failed, so that the next refresh (marked now) puts another trial in its place.
            # A trial that cannot exist is the search's own finding, not a retry.
            rows = [
                row.model_copy(update={"state": "Failed", "message": refused[row.name]})
                if row.name in refused
                else row
                for row in plan.status.trials
            ]
            failed = plan.status.model_copy(update={"trials": rows})
            publish_status(body, plan.status, failed, failed.phase)
            _mark((meta.namespace, meta.name))


def _create_trials(search: LeptonSearch, rows: list[SearchTrial]) -> dict[str, str]:
    """Create the rows' training jobs; for each that cannot be created, why (its row fails:
    retrying would not help)."""
    meta, refused = search.metadata, {}
    for row in rows:
        job = job_name(row)
        try:
            manifest = render_trial(search, row)
            if k8s.create(manifest):
                log.info("search %s/%s: created trial job %s", meta.namespace, meta.name, job)
                continue
        except ValidationError as error:  # a combination the domain probes did not try
            refused[row.name] = clipped(f"its parameters make no valid training spec: {error}")
            continue
        except k8s.RejectedError as error:
            refused[row.name] = clipped(f"the API server refused its training job: {error}")
            continue
        existing = k8s.get(GROUP_VERSION, "LeptonTrainingJob", meta.namespace, job)
        foreign = foreign_controller(existing, meta.uid) if existing is not None else None
        if foreign is not None:
            refused[row.name] = (
                f"a LeptonTrainingJob named {job!r} already exists and is not this "
                f"search's (its controller: {foreign}): delete or rename it"
            )
    return refused


def _publish_invalid(body: dict[str, Any], search: LeptonSearch, problem: str) -> None:
    previous = search.status or SearchStatus()
    book = ConditionBook(list(previous.conditions), search.metadata.generation, now())
    book.put("Succeeded", "False", "InvalidSpace", problem)
    book.put("Failed", "True", "InvalidSpace", problem)
    status = previous.model_copy(
        update={
            "phase": "Failed",
            "conditions": book.conditions,
            "observed_generation": search.metadata.generation,
            "message": clipped(problem),
        }
    )
    publish_status(body, search.status, status, "Failed")  # with a Warning Event, once


REFRESH[SEARCH] = refresh_search_status
