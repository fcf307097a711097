-- wrk script: sends DEPTH pipelined requests per write and counts each
-- response as a request (wrk's latency is then per batch).
--   wrk -t1 -c64 -d5s -s benchmarks/pipeline.lua http://127.0.0.1:8080/ -- 16
init = function(args)
  local depth = tonumber(args[1]) or 1
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, "/")
  end
  req = table.concat(r)
end

request = function()
  return req
end
