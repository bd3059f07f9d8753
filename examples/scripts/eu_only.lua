-- eu_only.lua: data residency. Only hives whose region starts with "eu" serve or host models.
-- With no EU candidate the script answers false: the request is refused (503 with the reason)
-- rather than handed to the built-in policy, which does not know this rule.

local function in_eu(x)
  return x.region ~= nil and x.region:find("^eu") ~= nil
end

function route(job, workers)
  return workers:with_model(job.model):ready():filter(in_eu):least_loaded() or false
end

function place(model, devices)
  return devices:filter(in_eu):fits(model.size_bytes):most_vram_free() or false
end
