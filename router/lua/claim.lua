-- Claim a command for exactly-once handling (CONTRACT §2.2).
-- KEYS[1] the command record gw:cmd:{inbox}:<command_id>, KEYS[2] its conversation
-- ARGV: entry_id, owner, lease_us, ttl_s
-- Returns {state, result, first_entry, address, last_inbound, route}: address is the number
-- the contact moved to (the conversation's field a) or false; last_inbound and route are the
-- conversation's last inbound message id and route (fields m, bc) or false, read here so the
-- provider request can be built once, before any rate-limit slot is taken; state is one of:
--   new       nobody had it: now ours, state waiting
--   takeover  its owner's lease ran out before any send started: now ours
--   orphan    its owner's lease ran out while a send was in flight: it may have been sent,
--             so it is never sent again (the caller, its owner now, records a failure)
--   busy      another live worker holds it (a duplicate copy in flight)
--   done      finished before: result is the recorded delivery, first_entry its outbox entry
local key = KEYS[1]
local conv = redis.call('HMGET', KEYS[2], 'a', 'm', 'bc')
local address = conv[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local lease_end = string.format('%d', now + tonumber(ARGV[3]))
local state = redis.call('HGET', key, 's')
if not state then
  redis.call('HSET', key, 's', 'waiting', 'e', ARGV[1], 'o', ARGV[2], 'l', lease_end)
  redis.call('EXPIRE', key, ARGV[4])
  return {'new', false, ARGV[1], address, conv[2], conv[3]}
end
if state == 'done' then
  return {'done', redis.call('HGET', key, 'r'), redis.call('HGET', key, 'e'), address}
end
local owner = redis.call('HGET', key, 'o')
if owner ~= ARGV[2] and tonumber(redis.call('HGET', key, 'l') or '0') > now then
  return {'busy', false, redis.call('HGET', key, 'e'), address}
end
if state == 'sending' then
  -- Ours now, to end it: an owner still alive after its lease ran out (a stall) can no
  -- longer record its own result (finish.lua checks the owner), so the command is answered
  -- once.
  redis.call('HSET', key, 'o', ARGV[2], 'l', lease_end)
  return {'orphan', false, redis.call('HGET', key, 'e'), address}
end
redis.call('HSET', key, 'o', ARGV[2], 'l', lease_end)
return {'takeover', false, redis.call('HGET', key, 'e'), address, conv[2], conv[3]}
