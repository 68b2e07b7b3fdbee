-- The GCRA limiter step, one copy shared by every script that paces sends: policy.lua (admit
-- and take a send's slots), publish.lua (charge an inbound message to the number's budget)
-- and hold.lua (hold a limiter back). A script names it with a `-- uses: gcra` line and gets
-- these functions prepended when it is loaded (router/scripts.py).
--
-- A limiter key holds its theoretical arrival time (tat), in microseconds of Redis's clock,
-- and lives until then (plus a second). `now` is the calling script's TIME.
--   gcra_admit_at  the earliest a send may pass: max(now, tat - tolerance); missed slots are
--                  never caught up, nothing is admitted before now
--   gcra_take      a send (or an inbound message) at `at` moves tat to max(tat, at) + interval
--   gcra_hold      nothing passes before `until_us`: tat becomes at least until + tolerance
local function gcra_tat(key)
  return tonumber(redis.call('GET', key) or '0')
end
local function gcra_set(key, tat, now)
  redis.call('SET', key, string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
end
local function gcra_admit_at(key, tolerance, now)
  return math.max(now, gcra_tat(key) - tolerance)
end
local function gcra_take(key, at, interval, now)
  gcra_set(key, math.max(gcra_tat(key), at) + interval, now)
end
local function gcra_hold(key, until_us, tolerance, now)
  local tat = until_us + tolerance
  if tat > gcra_tat(key) then gcra_set(key, tat, now) end
end
