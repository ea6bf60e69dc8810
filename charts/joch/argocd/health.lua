-- Argo CD health check for joch kinds (kstatus, decision D11). Lua 5.1 (Argo CD runs gopher-lua).
--
-- argocd-cm.yaml beside this file registers it for every joch kind as
-- resource.customizations.health.<group>_<Kind>; for kinds the operator does not reconcile yet it is
-- prefixed with `local reconciled = false`.
--
--   Degraded     Stalled=True (the operator gave up until the object changes), or Ready=False with
--                status.phase Failed (a referenced kind, e.g. a Policy that does not compile)
--   Suspended    status.phase Suspended (an MCPServer in quarantine)
--   Progressing  no status yet, status.observedGeneration (or Ready's) older than metadata.generation,
--                Reconciling=True, Ready not reported yet, or Ready=False otherwise (e.g. Pending on a
--                missing reference: kstatus InProgress)
--   Healthy      Ready=True for the current generation; or a kind the operator does not reconcile
--                that reports nothing
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
local conditions = status and status.conditions

if reconciled == false and (conditions == nil or #conditions == 0) then
  hs.status = "Healthy"
  hs.message = "joch does not report on this kind"
  return hs
end

if status == nil or (status.observedGeneration == nil and conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the joch operator to report status"
  return hs
end

if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the joch operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = find(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(find(conditions, "Ready"), "Suspended")
  return hs
end

local reconciling = find(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = find(conditions, "Ready")
if ready ~= nil and generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the joch operator to observe generation " .. tostring(generation)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if ready ~= nil and ready.status == "False" then
  if status.phase == "Failed" then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready, "NotReady")
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
