-- Argo CD health check for airt.dev/InferenceRuntime.
--
-- Install it under resource.customizations.health.airt.dev_InferenceRuntime in argocd-cm (see
-- docs/install.md). A runtime reports one condition, Ready: True when it is valid and usable,
-- False with a reason when it is not (which waiting will not fix).
local hs = {}

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the airt operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the airt operator to observe generation " .. tostring(generation)
  return hs
end

for _, c in ipairs(status.conditions) do
  if c.type == "Ready" then
    local message = c.message or c.reason or ""
    if c.status == "True" then
      hs.status = "Healthy"
    elseif c.status == "False" then
      hs.status = "Degraded"
    else
      hs.status = "Progressing"
    end
    hs.message = message
    return hs
  end
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
