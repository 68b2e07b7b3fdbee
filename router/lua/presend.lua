-- The last check before a command's HTTP request, after it waited for its slot: a person
-- may have taken the conversation, or the number may have been halted or disconnected,
-- meanwhile.
-- It also enforces the hard cap: the number (or bot) has dispatched fewer than `cap`
-- requests in the last `window_us`. The GCRA slots of policy.lua space sends evenly, but a
-- worker can wake late and bunch up with the next ones; this log of dispatch times (Redis
-- time), with the worker's own check that it resumed in time, is what guarantees "never
-- more than mps in any 1-second window".
-- KEYS: conversation, account state, command record, dispatch log (sorted set)
-- ARGV: author, owner, lease_us, cap, window_us
-- Returns {'ok'} (the record is now 'sending': it will never be sent a second time),
-- {'wait', us} (the cap is reached: try again then), {'reject', reason},
-- {'halt', provider_code}, or {'lost'} when another worker took the command over.
local conv, acct, cmd, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now = now_s * 1000000 + tonumber(clock[2])
if redis.call('HGET', cmd, 'o') ~= ARGV[2] then return {'lost'} end
local halt = redis.call('HGET', acct, 'halt')
if halt then return {'halt', halt} end
if redis.call('HEXISTS', acct, 'disc') == 1 then return {'reject', 'account_disconnected'} end
if ARGV[1] ~= 'human' then
  local paused_until = tonumber(redis.call('HGET', conv, 'p') or '0')
  if redis.call('HGET', conv, 'h') == '1' or paused_until > now_s then
    return {'reject', 'human_active'}
  end
end
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', log, '-inf', string.format('%d', now - window))
if redis.call('ZCARD', log) >= tonumber(ARGV[4]) then
  local oldest = tonumber(redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2])
  return {'wait', string.format('%d', oldest + window - now + 1)}
end
redis.call('ZADD', log, now, ARGV[2])
redis.call('PEXPIRE', log, math.floor(window / 1000) + 1000)
redis.call('HSET', cmd, 's', 'sending', 'l', string.format('%d', now + tonumber(ARGV[3])))
return {'ok'}
