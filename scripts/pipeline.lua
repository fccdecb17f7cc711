-- wrk script: HTTP/1.1 pipelining, so wrk can be compared with
-- `ringfetch bench -p 16` and `h2load -m 16`.
--
--   wrk -t1 -c256 -d5s -s scripts/pipeline.lua http://127.0.0.1:PORT/1k [-- DEPTH [PATH]]
--
-- request() hands wrk DEPTH requests at once as one buffer; wrk writes it,
-- then counts each parsed response as one request and calls request() again
-- when all DEPTH responses are in. So "N requests in" counts responses, the
-- same unit as the other clients. DEPTH defaults to 16, PATH to the URL's path.

local depth = 16
local req

init = function(args)
  depth = tonumber(args[1]) or depth
  local path = args[2] -- nil: wrk.format uses wrk.path, i.e. the URL's path
  local reqs = {}
  for i = 1, depth do
    reqs[i] = wrk.format(nil, path)
  end
  req = table.concat(reqs)
end

request = function()
  return req
end
