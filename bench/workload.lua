-- The benchmark's load for wrk: `wrk ... -s bench/workload.lua URL -- key=value ...`.
--
-- mix=reads  product reads only, ids drawn from Zipf(s) over the catalog
-- mix=mixed  reads (product by Zipf id, list/count from the popular paths) and writes
-- mix=writes updates, creates and deletes only
-- mix=sweep  each thread reads its share of the catalog and of the popular paths once
--            (cache warming), then carries on with Zipf reads
-- mix=path   one fixed path (the ceiling: /health/live)
-- Shares (p_list, p_count, p_update, p_create, p_delete) are fractions of all requests;
-- deletes walk this phase's slice of the reserve ids (reserve_lo..reserve_hi), which no
-- read ever names. The write token goes in the Authorization header of writes only.
-- done() prints one line "BENCH_JSON {...}" with wrk's counts and latency percentiles (µs).

local thread_count = 0
local threads = {}

function setup(thread)
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local cfg = {}
local cdf = {}
local paths = {}
local list_paths, count_paths = {}, {}
local sweep_next, path_next, delete_next, created = 0, 0, 0, 0
local write_headers, read_headers = {}, {}

local function id_of(prefix, index)
   return prefix .. string.format("%08x", index)
end

local function zipf_index()
   local r = math.random()
   local lo, hi = 1, #cdf
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < r then lo = mid + 1 else hi = mid end
   end
   return lo - 1
end

function init(args)
   for _, arg in ipairs(args) do
      local k, v = arg:match("^([%w_]+)=(.*)$")
      if k then cfg[k] = v end
   end
   cfg.n = tonumber(cfg.n)
   cfg.threads = tonumber(cfg.threads)
   for _, name in ipairs({"p_list", "p_count", "p_update", "p_create", "p_delete", "s",
                          "reserve_lo", "reserve_hi", "seed"}) do
      cfg[name] = tonumber(cfg[name] or "0")
   end
   math.randomseed(cfg.seed + 7919 * tid)
   local total, weights = 0, {}
   for i = 1, cfg.n do
      weights[i] = 1 / (i ^ cfg.s)
      total = total + weights[i]
   end
   local acc = 0
   for i = 1, cfg.n do
      acc = acc + weights[i] / total
      cdf[i] = acc
   end
   cdf[cfg.n] = 1
   for line in io.lines(cfg.paths) do
      local kind, path = line:match("^(%a+) (.+)$")
      if kind == "list" then table.insert(list_paths, path) end
      if kind == "count" then table.insert(count_paths, path) end
      if kind then table.insert(paths, path) end
   end
   write_headers = {["Authorization"] = "Bearer " .. cfg.token, ["Content-Type"] = "application/json"}
   sweep_next = tid
   delete_next = cfg.reserve_lo + tid
end

local function product_read()
   return wrk.format("GET", "/api/v1/products/" .. id_of(cfg.catalog_prefix, zipf_index()), read_headers)
end

local function update()
   local body = string.format('{"stock": %d}', math.random(0, 60))
   return wrk.format("PATCH", "/api/v1/products/" .. id_of(cfg.catalog_prefix, zipf_index()), write_headers, body)
end

local function create()
   created = created + 1
   local body = string.format(
      '{"sku": "wrk-%s-%d-%d", "name": "Load test item", "price": "19.99", "category": "audio", ' ..
      '"tags": ["new"], "stock": 5}', cfg.nonce, tid, created)
   return wrk.format("POST", "/api/v1/products", write_headers, body)
end

local function delete()
   if delete_next >= cfg.reserve_hi then
      return update() -- this phase's slice of the reserve is used up
   end
   local pid = id_of(cfg.reserve_prefix, delete_next)
   delete_next = delete_next + cfg.threads
   return wrk.format("DELETE", "/api/v1/products/" .. pid, write_headers)
end

local function mixed(p_list, p_count, p_update, p_create, p_delete)
   local r = math.random()
   if r < p_update then return update() end
   r = r - p_update
   if r < p_create then return create() end
   r = r - p_create
   if r < p_delete then return delete() end
   r = r - p_delete
   if r < p_list then return wrk.format("GET", list_paths[math.random(#list_paths)], read_headers) end
   r = r - p_list
   if r < p_count then return wrk.format("GET", count_paths[math.random(#count_paths)], read_headers) end
   return product_read()
end

function request()
   local mix = cfg.mix
   if mix == "reads" then
      return product_read()
   elseif mix == "mixed" then
      return mixed(cfg.p_list, cfg.p_count, cfg.p_update, cfg.p_create, cfg.p_delete)
   elseif mix == "writes" then
      local writes = cfg.p_update + cfg.p_create + cfg.p_delete
      return mixed(0, 0, cfg.p_update / writes, cfg.p_create / writes, cfg.p_delete / writes)
   elseif mix == "sweep" then
      if sweep_next < cfg.n then
         local pid = id_of(cfg.catalog_prefix, sweep_next)
         sweep_next = sweep_next + cfg.threads
         return wrk.format("GET", "/api/v1/products/" .. pid, read_headers)
      end
      path_next = path_next + 1
      if path_next <= #paths then return wrk.format("GET", paths[path_next], read_headers) end
      return product_read()
   end
   return wrk.format("GET", cfg.path, read_headers)
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
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(p, ", "), latency.mean, latency.max, latency.stdev))
end
