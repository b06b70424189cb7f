-- wrk script: every request carries a valid session cookie from a pool of many users.
--
-- wrk -s benchmarks/cookies.lua URL -- COOKIE_FILE [FRESH_FILE FRESH_EVERY]
--
-- COOKIE_FILE holds one Cookie header value per line (one user each). Thread t of n takes
-- users t, t+n, t+2n, ... so no two threads share a user, and rotates through them: each
-- request carries the next user's cookie. (wrk's Lua has no connection identity, so a
-- connection does not stick to one user; the server sees the same set of users either
-- way.) With FRESH_FILE, every FRESH_EVERY-th request instead carries a token the server
-- has never seen (each used once), for the many-users mix.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

local function read_lines(path)
   local lines = {}
   for line in io.lines(path) do
      if #line > 0 then lines[#lines + 1] = line end
   end
   return lines
end

local function requests_for(lines, first, step)
   local out = {}
   for i = first, #lines, step do
      out[#out + 1] = wrk.format("GET", "/", { ["Cookie"] = lines[i] })
   end
   return out
end

function init(args)
   local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
   pool = requests_for(read_lines(args[1]), id, nthreads)
   if #pool == 0 then error("no cookies for thread " .. id) end
   index = 0
   fresh = {}
   fresh_every = 0
   if args[2] and args[2] ~= "-" then
      fresh = requests_for(read_lines(args[2]), id, nthreads)
      fresh_every = tonumber(args[3])
   end
   fresh_used = 0
   fresh_short = 0
   count = 0
end

function request()
   count = count + 1
   if fresh_every > 0 and count % fresh_every == 0 then
      if fresh_used < #fresh then
         fresh_used = fresh_used + 1
         return fresh[fresh_used]
      end
      fresh_short = fresh_short + 1
   end
   index = index % #pool + 1
   return pool[index]
end

function done(summary, latency, requests)
   local used, short = 0, 0
   for _, thread in ipairs(threads) do
      used = used + (thread:get("fresh_used") or 0)
      short = short + (thread:get("fresh_short") or 0)
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
      '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "max_us": %.1f, "mean_us": %.1f, ' ..
      '"fresh_used": %d, "fresh_short": %d}\n',
      summary.requests, summary.duration, errors.connect, errors.read, errors.write,
      errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, used, short))
end
