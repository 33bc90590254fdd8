-- wrk script: send `depth` requests back to back on each connection (HTTP pipelining).
-- Usage: wrk -s pipeline.lua URL -- PATH DEPTH
local depth, path
init = function(args)
  path = args[1] or "/"
  depth = tonumber(args[2] or "16")
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, path)
  end
  req = table.concat(r)
end
request = function()
  return req
end
