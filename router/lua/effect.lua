-- What a provider's verdict leaves behind (issue #17), one copy for both ways it arrives:
-- verdict.lua after a provider's answer to a send, and publish.lua's V after a failed status
-- webhook. A script names it with a `-- uses: effect` line (router/scripts.py).
--
-- effect_apply(verdict, key, code, start_s, hold_s, ttl_s, now_s), `key` by verdict:
--   opted_out        conversation  oo = code: what the channel's opt-out refuses is refused
--   held             conversation  mh = '<until>:<code>', until = start + hold: marketing
--                                  templates are refused until then (kept if already later)
--   undeliverable    conversation  uh = '<until>:<code>': every command is refused until then
--                                  or until the contact writes (publish.lua M clears it)
--   window_closed    conversation  wc = start: the window counts as closed unless the
--                                  contact's latest message (t) is later than that
--   country_blocked  country block SET code, EX hold
--   halt             account state halt = code
-- `start_s` is the provider's time of the failure, at most now (0: now). A hold of 0 seconds
-- leaves nothing. A conversation written to gets `ttl_s` (0: its TTL is left as it is).
local function effect_hold(key, field, code, until_s)
  local old = tonumber(string.match(redis.call('HGET', key, field) or '', '^(%d+)') or '0')
  if until_s > old then
    redis.call('HSET', key, field, string.format('%d:%s', until_s, code))
  end
end
local function effect_apply(verdict, key, code, start_s, hold_s, ttl_s, now_s)
  if start_s <= 0 or start_s > now_s then start_s = now_s end
  if verdict == 'country_blocked' then
    if hold_s > 0 then redis.call('SET', key, code, 'EX', hold_s) end
    return
  elseif verdict == 'halt' then
    redis.call('HSET', key, 'halt', code)
    return
  elseif verdict == 'opted_out' then
    redis.call('HSET', key, 'oo', code)
  elseif (verdict == 'held' or verdict == 'undeliverable') and hold_s > 0 then
    effect_hold(key, verdict == 'held' and 'mh' or 'uh', code, start_s + hold_s)
  elseif verdict == 'window_closed' then
    if start_s > tonumber(redis.call('HGET', key, 'wc') or '0') then
      redis.call('HSET', key, 'wc', start_s)
    end
  else
    return
  end
  if ttl_s > 0 then redis.call('EXPIRE', key, ttl_s) end
end
