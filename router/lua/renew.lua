-- Extend a command's lease while its worker is alive (heartbeat).
-- KEYS[1] command record. ARGV: owner, lease_us. Returns 1 if extended, 0 if not ours.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('HSET', KEYS[1], 'l', string.format('%d', now + tonumber(ARGV[2])))
return 1
