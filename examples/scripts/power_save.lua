-- power_save.lua: bin-packing, so idle machines can sleep. Prefer devices on hives that
-- already run workers, then the fullest device (least free memory) that still fits the model.

function place(model, devices)
  local awake = {}
  for _, d in ipairs(devices) do
    if d.workers > 0 then awake[d.hive_id] = true end
  end
  local fitting = devices:fits(model.size_bytes)
  local candidates = fitting:filter(function(d) return awake[d.hive_id] end)
  if candidates:empty() then candidates = fitting end
  return candidates:sort_by(function(d) return d.memory_free end):first()
end
