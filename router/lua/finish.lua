-- Record a command's result and publish its delivery event, atomically; for a repeated
-- command_id only publish (the record already holds the original result).
-- KEYS: command record, inbox stream, and for a message whose provider echoes it back (Meta
-- messaging) the dedup mark of that echo. ARGV: result_json (empty: publish only), delivery
-- payload, inbox maxlen, ttl_s
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 's', 'done', 'r', ARGV[1])
  redis.call('HDEL', KEYS[1], 'o', 'l')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  -- The echo of our own send then counts as already published: it is not an echo of a
  -- person's reply, so it neither reaches the assistant nor pauses it.
  if KEYS[3] then redis.call('SET', KEYS[3], '1', 'EX', ARGV[4]) end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[2])
return 1
