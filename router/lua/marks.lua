-- Dedup marks (router/keys.py `gw:mk:*`): fields of one hash per (stream, time bucket,
-- shard). A caller passes, for each mark, its shard's hashes in the buckets b-1, b, b+1 of
-- its own clock and the field; Redis's clock picks the current bucket among them (a
-- gateway's clock off by a little at a bucket's edge changes nothing), and the one before.
-- Each function takes k, the index of the first of the three keys, and the bucket length
-- (the dedup TTL, seconds).
local function mark_keys(k, bucket_s, now_s)
  local b = tonumber(string.match(KEYS[k + 1], ':(%-?%d+):%d+$'))
  local d = math.floor(now_s / bucket_s) - b
  if d < -1 then d = -1 elseif d > 1 then d = 1 end
  local cur = KEYS[k + 1 + d]
  local prev = nil
  if d > -1 then prev = KEYS[k + d] end
  -- the current bucket's hash is kept until its next bucket ends
  return cur, prev, (b + d + 2) * bucket_s
end

-- the stored value of a mark ("1", or a status rank), or nil
local function mark_get(k, field, bucket_s, now_s)
  local cur, prev = mark_keys(k, bucket_s, now_s)
  local found = redis.call('HGET', cur, field)
  if not found and prev then found = redis.call('HGET', prev, field) end
  if found then return found end
  return nil
end

-- set a mark in the current bucket
local function mark_set(k, field, value, bucket_s, now_s)
  local cur, _, expire_at = mark_keys(k, bucket_s, now_s)
  redis.call('HSET', cur, field, value)
  redis.call('EXPIREAT', cur, expire_at)
end

-- take a mark back (a publish that failed after the mark was set)
local function mark_del(k, field, bucket_s, now_s)
  local cur = mark_keys(k, bucket_s, now_s)
  redis.call('HDEL', cur, field)
end
