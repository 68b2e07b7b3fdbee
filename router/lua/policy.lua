-- Decide whether a command may be sent now, and reserve its rate-limit slots (CONTRACT §3).
-- All keys belong to the conversation's assistant slot.
-- uses: gcra
-- KEYS: conversation, account state, country block, limiter 1 (number or bot),
--       limiter 2 (pair or chat, may be unused), command record
-- ARGV: window rule (1/0: free-form messages only within window_s of the contact's last
--       message), type, author, opt-out applies (1/0: the channel's opt-out refuses every
--       command, or this is a marketing template), cross-country rule ('' none; else 1/0:
--       crosses a restricted border by the numbers alone),
--       window_s, max_wait_us, interval1_us, tolerance1_us, interval2_us, tolerance2_us,
--       use_limiter2 (1/0), owner, lease_us, human_window_s (a human agent's tagged message
--       may still go this long after the contact's last message; 0: not this command)
-- Holds a provider's answer or failed status left on the conversation (effect.lua): uh (an
-- undeliverable contact) refuses every command until then; mh (the per-user marketing cap)
-- refuses what an opt-out would refuse among templates (marketing templates, where the
-- opt-out is only marketing's); wc (the provider said the window is closed) closes the
-- window until the contact writes after it (or in the same second).
-- Returns {'ok', wait_us, slot_us} with both slots reserved, or
--         {'later', wait_us} (only the contact's limiter is full: ask again then), or
--         {'reject', reason}, or {'halt', provider_code}.
local conv, acct, block, lim1, lim2, cmd = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local window_rule, ctype, author = ARGV[1] == '1', ARGV[2], ARGV[3]
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now = now_s * 1000000 + tonumber(clock[2])

local halt = redis.call('HGET', acct, 'halt')
if halt then return {'halt', halt} end
if redis.call('HEXISTS', acct, 'disc') == 1 then return {'reject', 'account_disconnected'} end
if author ~= 'human' then
  local paused_until = tonumber(redis.call('HGET', conv, 'p') or '0')
  if redis.call('HGET', conv, 'h') == '1' or paused_until > now_s then
    return {'reject', 'human_active'}
  end
end
local opted_out = redis.call('HGET', conv, 'oo')
if opted_out and ARGV[4] == '1' then
  return {'reject', 'opted_out'}
end
local marks = redis.call('HMGET', conv, 'uh', 'mh', 'wc')
if marks[1] and tonumber(string.match(marks[1], '^%d+') or '0') > now_s then
  return {'reject', 'undeliverable'}
end
if marks[2] and ctype == 'template' and ARGV[4] == '1'
    and tonumber(string.match(marks[2], '^%d+') or '0') > now_s then
  return {'reject', 'held'}
end
local last_time = tonumber(redis.call('HGET', conv, 't') or '0')
local window_open = now_s - last_time < tonumber(ARGV[6])
    and tonumber(marks[3] or '0') <= last_time
if window_rule and ctype ~= 'template' and not window_open then
  local human_window = tonumber(ARGV[15])
  if human_window == 0 or now_s - last_time >= human_window then
    return {'reject', 'window_closed'}
  end
end
if ARGV[5] ~= '' and (ctype == 'template' or not window_open) then
  if ARGV[5] == '1' or redis.call('EXISTS', block) == 1 then
    return {'reject', 'cross_country'}
  end
end

-- The slots (gcra.lua): a send takes the later of the two limiters' times, and each
-- limiter's tat moves past that time.
local use2 = ARGV[12] == '1'
local at = gcra_admit_at(lim1, tonumber(ARGV[9]), now)
if use2 then
  local at2 = gcra_admit_at(lim2, tonumber(ARGV[11]), now)
  if at2 > at then
    -- The contact's own budget (WhatsApp pair rate, Telegram chat rate) is what holds this
    -- send back: wait for it without reserving a slot of the number, whose other
    -- conversations keep their pace meanwhile (a reservation in the future would move the
    -- number's tat there and stall all of them). The caller asks again then.
    if at2 - now > tonumber(ARGV[7]) then return {'reject', 'rate_limited'} end
    return {'later', string.format('%d', at2 - now)}
  end
end
if at - now > tonumber(ARGV[7]) then return {'reject', 'rate_limited'} end
gcra_take(lim1, at, tonumber(ARGV[8]), now)
if use2 then gcra_take(lim2, at, tonumber(ARGV[10]), now) end
redis.call('HSET', cmd, 'l', string.format('%d', at + tonumber(ARGV[14])))
return {'ok', string.format('%d', at - now), string.format('%d', at)}
