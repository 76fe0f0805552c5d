-- Argo CD health check for LeptonEndpoint (lepton.ai/v1alpha1); Lua 5.1, as Argo CD runs it.
-- Healthy when Available (serving); Progressing while Pending or Progressing (and until the
-- operator has seen the latest spec); Degraded when Degraded or Failed.
-- The message is the operator's status.message, which says what to fix.
local PHASE_HEALTH = {
  Pending = "Progressing",
  Progressing = "Progressing",
  Available = "Healthy",
  Degraded = "Degraded",
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
local detail = status.message
if (detail == nil or detail == "") and status.url ~= nil and health.status == "Healthy" then
  detail = "serving at " .. status.url
end
if detail ~= nil and detail ~= "" then
  health.message = status.phase .. ": " .. detail
else
  health.message = status.phase
end
return health
