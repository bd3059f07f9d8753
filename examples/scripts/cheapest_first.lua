-- cheapest_first.lua: the cheapest device that fits the model. A hive states its price with a
-- label such as cost=0.8 (any number); hives without one count as the most expensive.

local function cost(d)
  return tonumber(d.labels.cost) or math.huge
end

function place(model, devices)
  return devices:fits(model.size_bytes):sort_by(cost):first()
end
