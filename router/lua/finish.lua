-- Record a command's result and publish its delivery event, atomically; for a repeated
-- command_id only publish (the record already holds the original result).
-- KEYS: command record, inbox stream, then the keys ARGV[5] names, in this order: 'e' the
-- dedup mark of the message's echo (a provider that echoes sends back: Meta messaging), 's'
-- where the message id's command_id is kept (a provider whose statuses do not name the
-- command: Twilio, Meta messaging). ARGV: result_json (empty: publish only), delivery
-- payload, inbox maxlen, ttl_s, optional keys ('', 'e', 's' or 'es'), command_id
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 's', 'done', 'r', ARGV[1])
  redis.call('HDEL', KEYS[1], 'o', 'l')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  local k = 3
  if string.find(ARGV[5], 'e', 1, true) then
    -- The echo of our own send then counts as already published: it is not an echo of a
    -- person's reply, so it neither reaches the assistant nor pauses it.
    redis.call('SET', KEYS[k], '1', 'EX', ARGV[4])
    k = k + 1
  end
  if string.find(ARGV[5], 's', 1, true) then
    -- The message's statuses name the command (publish.lua's T).
    redis.call('SET', KEYS[k], ARGV[6], 'EX', ARGV[4])
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[2])
return 1
