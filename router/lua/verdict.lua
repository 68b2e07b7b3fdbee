-- Record what a provider's answer to a send means beyond that send (router/sender.py): an
-- opt-out, a hold, a closed window, a country block, a halted account (effect.lua).
-- uses: effect
-- KEYS[1]: the conversation, the country block or the account state (by verdict).
-- ARGV: verdict, code, hold_s, ttl_s
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
effect_apply(ARGV[1], KEYS[1], ARGV[2], 0, tonumber(ARGV[3]), tonumber(ARGV[4]), now_s)
return 1
