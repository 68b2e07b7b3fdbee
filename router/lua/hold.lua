-- Hold a limiter back: nothing is admitted through it for `delay_us` (Redis time), because
-- the provider asked for a pause (WhatsApp 131056 for a pair, Telegram 429 retry_after).
-- KEYS[1] limiter. ARGV: delay_us, tolerance_us (the limiter's burst allowance)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > current then
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
end
return 1
