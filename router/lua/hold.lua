-- Hold a limiter back: nothing is admitted through it for `delay_us` (Redis time), because
-- the provider asked for a pause (WhatsApp 131056 for a pair, Telegram 429 retry_after).
-- uses: gcra
-- KEYS[1] limiter. ARGV: delay_us, tolerance_us (the limiter's burst allowance)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
gcra_hold(KEYS[1], now + tonumber(ARGV[1]), tonumber(ARGV[2]), now)
return 1
