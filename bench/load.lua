-- wrk's load: `wrk ... -s bench/load.lua URL -- FILE TOKEN THREADS` replays FILE, the requests
-- bench/workload.py wrote, one "METHOD PATH [BODY]" per line. Thread i sends lines i, i+T, ...;
-- after the last it starts over without the creates and deletes (a second create of a SKU or
-- delete of an id would fail). done() prints "BENCH_JSON {...}": counts and latency in µs.

local lines, step, at, again, headers = {}, 1, 1, false, {}

function init(args)
   for line in io.lines(args[1]) do lines[#lines + 1] = line end
   headers = {["Authorization"] = "Bearer " .. args[2], ["Content-Type"] = "application/json"}
   step = tonumber(args[3])
   at = tid + 1 -- set by setup() in this thread's state
end

function setup(thread)
   setup_count = (setup_count or 0) + 1
   thread:set("tid", setup_count - 1)
end

function request()
   while true do
      if at > #lines then at, again = (at - 1) % #lines + 1, true end
      local method, path, body = lines[at]:match("^(%u+) (%S+) ?(.*)$")
      at = at + step
      if not (again and (method == "POST" or method == "DELETE")) then
         if method == "GET" then return wrk.format("GET", path) end
         return wrk.format(method, path, headers, body)
      end
   end
end

function done(summary, latency, requests)
   local p = {}
   for _, q in ipairs({50, 90, 95, 99, 99.9}) do
      p[#p + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {%s, "mean": %.1f, "max": %d, "stdev": %.1f}}\n',
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(p, ", "), latency.mean, latency.max, latency.stdev))
end
