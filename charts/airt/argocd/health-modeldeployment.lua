-- Argo CD health check for airt.dev/ModelDeployment.
--
-- Install it under resource.customizations.health.airt.dev_ModelDeployment in argocd-cm (see
-- docs/install.md). Argo CD runs it with the live object in `obj` (gopher-lua, Lua 5.1); the
-- e2e tests run it with Debian's lua5.4. It reads only what the operator writes: the standard
-- conditions and observedGeneration.
--
--   Healthy      Ready=True, for the current generation
--   Degraded     something that waiting alone will not fix: Degraded=True, Scheduled=False
--                (NoMatchingGPUNodes, NoMatchingDevices: no node can ever take the pods;
--                Unschedulable, DevicesBusy: none can now, until capacity frees), RuntimeResolved=False, an invalid spec, a model
--                that fails to load, a rollout past its deadline
--   Progressing  everything else: not yet observed, rolling out, pods pending
local hs = {}

local function condition(conditions, type_)
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.type .. "=" .. tostring(c.status)
  if c.reason ~= nil and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

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

local conditions = status.conditions
local ready = condition(conditions, "Ready")
local degraded = condition(conditions, "Degraded")
local scheduled = condition(conditions, "Scheduled")
local resolved = condition(conditions, "RuntimeResolved")
local available = condition(conditions, "Available")
local progressing = condition(conditions, "Progressing")

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

local failures = {
  {degraded ~= nil and degraded.status == "True", degraded},
  {scheduled ~= nil and scheduled.status == "False" and scheduled.reason ~= "PendingScheduling", scheduled},
  {resolved ~= nil and resolved.status == "False", resolved},
  {ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec", ready},
  {available ~= nil and available.status == "False"
     and (available.reason == "ModelLoadFailed" or available.reason == "ModelDigestMismatch"), available},
  {progressing ~= nil and progressing.status == "False" and progressing.reason == "ProgressDeadlineExceeded", progressing},
}
for _, failure in ipairs(failures) do
  if failure[1] then
    hs.status = "Degraded"
    hs.message = describe(failure[2], "Degraded")
    return hs
  end
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
