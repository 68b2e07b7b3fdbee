-- Record a command's result and publish its delivery event, atomically; for a repeated
-- command_id only publish (the record already holds the original result).
-- uses: marks
-- KEYS: command record, inbox stream, then the keys ARGV[5] names, in this order: 'e' the
-- dedup mark of the message's echo (a provider that echoes sends back: Meta messaging; three
-- keys, marks.lua), 's' where the message id's command_id is kept (a provider whose statuses
-- do not name the command: Twilio, Meta messaging). ARGV: result_json (empty: publish only),
-- delivery payload, inbox maxlen, ttl_s, optional keys ('', 'e', 's' or 'es'), command_id,
-- the echo mark's field ('' without 'e'), the caller's owner name.
-- Returns 1, or 0 when a result was to be recorded but the record had already ended or
-- belongs to another worker now: nothing is written or published then. (A call that timed
-- out during a Redis stall still runs once Redis resumes, and the caller runs it again; a
-- worker whose lease ran out during a stall finds the command taken over. Either way the
-- command is answered once.)
if ARGV[1] ~= '' then
  local state = redis.call('HMGET', KEYS[1], 's', 'o')
  if state[1] == 'done' or (state[2] and state[2] ~= ARGV[8]) then
    return 0
  end
  redis.call('HSET', KEYS[1], 's', 'done', 'r', ARGV[1])
  redis.call('HDEL', KEYS[1], 'o', 'l')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  local k = 3
  if string.find(ARGV[5], 'e', 1, true) then
    -- The echo of our own send then counts as already published: it is not an echo of a
    -- person's reply, so it neither reaches the assistant nor pauses it.
    local clock = redis.call('TIME')
    mark_set(k, ARGV[7], '1', tonumber(ARGV[4]), tonumber(clock[1]))
    k = k + 3
  end
  if string.find(ARGV[5], 's', 1, true) then
    -- The message's statuses name the command (publish.lua's T).
    redis.call('SET', KEYS[k], ARGV[6], 'EX', ARGV[4])
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[2])
return 1
