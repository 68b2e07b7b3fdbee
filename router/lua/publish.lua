-- Publish the events of one webhook (or one micro-batch) atomically, exactly once each.
--
-- KEYS are consumed in order by the operations that ARGV lists after ARGV[1] (dedup TTL in
-- seconds). Each operation is a code followed by its arguments:
--   E maxlen payload          KEYS: stream, dedup   publish unless the dedup mark exists
--   S maxlen rank payload     KEYS: stream, dedup   publish if rank beats the stored rank
--   P maxlen payload          KEYS: stream          publish (no identity: dead letters)
--   W time message_id expire  KEYS: conversation    remember the latest live message time
--   U wa_id ttl               KEYS: bsuid map       remember which wa_id a BSUID belongs to
-- Returns one integer per E/S/P operation: 1 published, 0 duplicate (or outranked).
--
-- The mark is written after the XADD: if the XADD fails, the script stops before the mark,
-- so a platform retry is published normally.
local ttl = ARGV[1]
local out = {}
local k, a = 1, 2
while a <= #ARGV do
  local op = ARGV[a]
  if op == 'E' then
    local stream, mark = KEYS[k], KEYS[k + 1]
    if redis.call('EXISTS', mark) == 0 then
      redis.call('XADD', stream, 'MAXLEN', '~', ARGV[a + 1], '*', 'event', ARGV[a + 2])
      redis.call('SET', mark, '1', 'EX', ttl)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    k, a = k + 2, a + 3
  elseif op == 'S' then
    local stream, mark = KEYS[k], KEYS[k + 1]
    local rank = tonumber(ARGV[a + 2])
    local seen = tonumber(redis.call('GET', mark) or '0')
    if rank > seen then
      redis.call('XADD', stream, 'MAXLEN', '~', ARGV[a + 1], '*', 'event', ARGV[a + 3])
      redis.call('SET', mark, rank, 'EX', ttl)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    k, a = k + 2, a + 4
  elseif op == 'P' then
    redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[a + 1], '*', 'event', ARGV[a + 2])
    out[#out + 1] = 1
    k, a = k + 1, a + 3
  elseif op == 'W' then
    local key, t = KEYS[k], tonumber(ARGV[a + 1])
    local last = tonumber(redis.call('HGET', key, 't') or '0')
    if t >= last then
      redis.call('HSET', key, 't', t, 'm', ARGV[a + 2])
      redis.call('EXPIREAT', key, ARGV[a + 3])
    end
    k, a = k + 1, a + 4
  elseif op == 'U' then
    redis.call('SET', KEYS[k], ARGV[a + 1], 'EX', ARGV[a + 2])
    k, a = k + 1, a + 3
  else
    return redis.error_reply('publish.lua: unknown operation ' .. tostring(op))
  end
end
return out
