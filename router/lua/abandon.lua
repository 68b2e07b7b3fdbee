-- End a command whose handling broke on an unexpected error (a bug, not a provider
-- answer): record `result` and publish its delivery, but only while this worker still owns
-- the record and it has not ended yet, so a delivery already published is never repeated.
-- KEYS: command record, inbox stream. ARGV: owner, result_json, delivery payload,
-- inbox maxlen, ttl_s
-- Returns 1 when it recorded and published, 0 when the record was not ours to end.
local state = redis.call('HGET', KEYS[1], 's')
if not state or state == 'done' or redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 's', 'done', 'r', ARGV[2])
redis.call('HDEL', KEYS[1], 'o', 'l')
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[3])
return 1
