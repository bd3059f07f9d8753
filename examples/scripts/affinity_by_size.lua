-- affinity_by_size.lua: models over 8 GiB go to the CUDA device with the most free memory;
-- smaller ones stay off the GPUs, on the CPU or Metal device with the most free memory.

local BIG = 8 * 1024 * 1024 * 1024

function place(model, devices)
  local fitting = devices:fits(model.size_bytes)
  if model.size_bytes > BIG then
    return fitting:kind("cuda"):most_vram_free()
  end
  return fitting:filter(function(d) return d.kind ~= "cuda" end):most_vram_free()
end
