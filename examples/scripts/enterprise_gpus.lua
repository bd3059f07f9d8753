-- enterprise_gpus.lua: enterprise work runs on H100 hives, everything else on A100 hives.
-- A job or model is "enterprise" when its tenant is "enterprise" or it carries the label
-- tier=enterprise. Hives say what they have with the label gpu=h100 / gpu=a100.
-- route: the least-loaded ready worker of the model in that group.
-- place: the device with the most free memory in that group that fits the model.
-- An empty group returns nil, so the built-in policy decides.

local function group(req)
  if req.tenant == "enterprise" or req.labels.tier == "enterprise" then return "h100" end
  return "a100"
end

function route(job, workers)
  return workers:with_model(job.model):ready():with_label("gpu", group(job)):least_loaded()
end

function place(model, devices)
  return devices:with_label("gpu", group(model)):fits(model.size_bytes):most_vram_free()
end
