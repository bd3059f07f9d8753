-- eu_only.lua: data residency. Only hives whose region starts with "eu" serve or host models.
-- nil (no EU candidate) hands the decision back to the built-in policy, which does not know
-- this rule: pair the script with region labels on every hive.

local function in_eu(x)
  return x.region ~= nil and x.region:find("^eu") ~= nil
end

function route(job, workers)
  return workers:with_model(job.model):ready():filter(in_eu):least_loaded()
end

function place(model, devices)
  return devices:filter(in_eu):fits(model.size_bytes):most_vram_free()
end
