-- Warn once per stretch of silence of an account owner's own app (router/upkeep.py).
--
-- KEYS[1] the account state (gw:acct:*), KEYS[2] the assistant's inbox (one slot: the key's
-- hash tag is the inbox's name). ARGV[1] the `seen` the router judged silent for too long,
-- ARGV[2] the inbox's MAXLEN ~, ARGV[3] the warning (an `account` event, JSON).
--
-- Published only while `seen` is still that value (no sign of life came in meanwhile:
-- publish.lua `L` moves it) and that stretch was not warned of yet (`warned`), so every
-- process may check and the warning is still written once. Returns 1 published, 0 not.
local state = redis.call('HMGET', KEYS[1], 'seen', 'warned')
if state[1] ~= ARGV[1] or state[2] == ARGV[1] then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[3])
redis.call('HSET', KEYS[1], 'warned', ARGV[1])
return 1
