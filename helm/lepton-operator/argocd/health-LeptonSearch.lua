-- Argo CD health check for LeptonSearch (lepton.ai/v1alpha1); Lua 5.1, as Argo CD runs it.
-- Healthy when the search Succeeded (its best trial is in status.results); Progressing while
-- Pending or Running (and until the operator has seen the latest spec); Degraded when it Failed.
-- The message is the operator's status.message, which says what to fix.
local PHASE_HEALTH = {
  Pending = "Progressing",
  Running = "Progressing",
  Succeeded = "Healthy",
  Failed = "Degraded",
}

local health = { status = "Progressing", message = "Waiting for the Lepton operator" }
local status = obj.status
if status == nil or status.phase == nil then
  return health
end

-- A status computed from an older spec says nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  health.message = "Waiting for the Lepton operator to reconcile generation " .. generation
  return health
end

health.status = PHASE_HEALTH[status.phase] or "Unknown"
if status.message ~= nil and status.message ~= "" then
  health.message = status.phase .. ": " .. status.message
else
  health.message = status.phase
end
return health
