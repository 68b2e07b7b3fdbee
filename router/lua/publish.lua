-- Publish the events of one webhook (or one micro-batch) atomically, exactly once each.
-- uses: gcra
-- uses: effect
-- uses: marks
--
-- KEYS are consumed in order by the operations that ARGV lists after ARGV[1] (dedup TTL in
-- seconds). Each operation is a code followed by its arguments. `mark` stands for three
-- KEYS, the hashes of the event's dedup mark in the caller's buckets b-1, b, b+1 (marks.lua),
-- and `field` for its field there:
--   E maxlen payload field    KEYS: stream, mark    publish unless the dedup mark exists
--   S maxlen rank payload field
--                             KEYS: stream, mark    publish if rank beats the stored rank
--   T (arguments as S)        KEYS: stream, mark, sent
--                             a status that names no command: as S, and if the gateway sent
--                             the message (finish.lua kept `sent`: its command_id), the
--                             payload's `"command_id":null` becomes that command_id
--   P maxlen payload          KEYS: stream          publish (no identity: dead letters)
--   M maxlen payload time message_id conv_ttl contact_json conversation_json route excerpt
--     field                   KEYS: stream, mark, conversation
--                             a live message: publish unless marked; the payload's trailing
--                             `"ai_paused":false}` becomes true while the AI is paused; if
--                             the contact changed its number, the payload's contact_id and
--                             conversation_id become the conversation's original ones (the
--                             `alias` field); the conversation remembers the latest message
--                             (the 24-hour window), the business route of the latest one
--                             (`bc`: a Telegram business_connection_id, '' for none), its
--                             text excerpt (`x`, for escalation notices; '' keeps none) and
--                             forgets an opt-out (the contact wrote)
--   W (arguments as M)        a live event the contact did not write (a Telegram chat boost,
--                             the business owner's own message): published and flagged as M
--                             does, but the conversation is left as it is
--   O                         KEYS: conversation    after the member event just published:
--                                                   the contact unblocked the bot, forget an
--                                                   opt-out
--   N original_contact new_contact conv_ttl
--                             KEYS: original conversation, old number's, new number's
--                             after the system message just published by M (a contact
--                             changed its number): the new number's conversation keeps the
--                             original conversation id (alias) and inherits the old one's
--                             state; the original conversation now sends to the new number
--   C interval_us             KEYS: limiter         charge the number's send budget for the
--                                                   message just published by M
--   H until conv_ttl          KEYS: conversation    an echo: pause the AI until `until`
--   U wa_id ttl               KEYS: bsuid map       remember which wa_id a BSUID belongs to
--   A connected event         KEYS: account state   after the account event just published:
--                                                   connected 0 marks the number disconnected
--                                                   (commands are refused), 1 clears that
--   L time                    KEYS: account state   after the event just published (a sign
--                                                   of life of the owner's own app): `seen`
--                                                   becomes `time` (at most now) if later
--   V verdict code time hold_s conv_ttl
--                             KEYS: conversation, country block or account state
--                             after the failed status just published: what its error means
--                             for the contact or the account, as the same code in an answer
--                             to a send would (effect.lua: opt-out, hold, closed window,
--                             country block, halt); the adapter chose the verdict
-- Returns one integer per E/S/P/M/W operation: 1 published, 0 duplicate (or outranked).
--
-- C, N, A, L, V and O follow their own event's E/S/M and act only on an event just published
-- (`last`), so a platform retry repeats nothing but P, which has no mark.
--
-- Marks are written after the XADD: if the XADD fails, the script stops before the mark,
-- so a platform retry is published normally. (M sets its mark first, in the same call that
-- checks it, and deletes it again if its XADD fails: the same outcome.)
local ttl = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now_us = now_s * 1000000 + tonumber(clock[2])
local out = {}
local last = 0
local k, a = 1, 2

local function replace_once(s, from, to)
  local i, j = string.find(s, from, 1, true)
  if not i then return s end
  return string.sub(s, 1, i - 1) .. to .. string.sub(s, j + 1)
end

local function xadd(stream, maxlen, payload)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', payload)
end

while a <= #ARGV do
  local op = ARGV[a]
  if op == 'E' then
    local stream, field = KEYS[k], ARGV[a + 3]
    last = 0
    if not mark_get(k + 1, field, ttl, now_s) then
      xadd(stream, ARGV[a + 1], ARGV[a + 2])
      mark_set(k + 1, field, '1', ttl, now_s)
      last = 1
    end
    out[#out + 1] = last
    k, a = k + 4, a + 4
  elseif op == 'S' then
    local stream, field = KEYS[k], ARGV[a + 4]
    local rank = tonumber(ARGV[a + 2])
    last = 0
    if rank > tonumber(mark_get(k + 1, field, ttl, now_s) or '0') then
      xadd(stream, ARGV[a + 1], ARGV[a + 3])
      mark_set(k + 1, field, rank, ttl, now_s)
      last = 1
    end
    out[#out + 1] = last
    k, a = k + 4, a + 5
  elseif op == 'T' then
    local stream, field = KEYS[k], ARGV[a + 4]
    local rank = tonumber(ARGV[a + 2])
    last = 0
    if rank > tonumber(mark_get(k + 1, field, ttl, now_s) or '0') then
      local payload = ARGV[a + 3]
      local command = redis.call('GET', KEYS[k + 4])
      if command then
        payload = replace_once(payload, '"command_id":null', '"command_id":' .. cjson.encode(command))
      end
      xadd(stream, ARGV[a + 1], payload)
      mark_set(k + 1, field, rank, ttl, now_s)
      last = 1
    end
    out[#out + 1] = last
    k, a = k + 5, a + 5
  elseif op == 'P' then
    xadd(KEYS[k], ARGV[a + 1], ARGV[a + 2])
    last = 1
    out[#out + 1] = last
    k, a = k + 1, a + 3
  elseif op == 'M' or op == 'W' then
    local stream, conv, field = KEYS[k], KEYS[k + 4], ARGV[a + 10]
    last = 0
    -- The mark is set right after the check and taken back if the XADD fails, so a failed
    -- publish still leaves no mark behind.
    if not mark_get(k + 1, field, ttl, now_s) then
      mark_set(k + 1, field, '1', ttl, now_s)
      local payload = ARGV[a + 2]
      -- one lookup of the conversation for the fields read here
      local state = redis.call('HMGET', conv, 'p', 'h', 'alias', 't', 'oo', 'bc', 'uh')
      local paused_until, alias, latest = tonumber(state[1] or '0'), state[3], tonumber(state[4] or '0')
      if state[2] == '1' or paused_until > now_s then
        payload = string.sub(payload, 1, -7) .. 'true}'
      end
      if alias then
        -- The alias goes in as a JSON string (cjson escapes quotes, backslashes, controls);
        -- the prefix is already JSON text, cut from the router's encoded conversation id.
        local quoted = cjson.encode(alias)
        payload = replace_once(payload, '"contact_id":' .. ARGV[a + 6], '"contact_id":' .. quoted)
        local prefix = string.match(ARGV[a + 7], '^"(.*:)[^:]*"$')
        payload = replace_once(payload, '"conversation_id":' .. ARGV[a + 7],
                               '"conversation_id":"' .. prefix .. string.sub(quoted, 2))
      end
      local added = redis.pcall('XADD', stream, 'MAXLEN', '~', ARGV[a + 1], '*', 'event', payload)
      if type(added) == 'table' and added.err then
        mark_del(k + 1, field, ttl, now_s)
        return added
      end
      -- A provider time ahead of Redis's clock opens the window at most until now + 24 h.
      local t = math.min(tonumber(ARGV[a + 3]), now_s)
      if op == 'M' and t >= latest then
        local route = ARGV[a + 8]
        if route ~= '' then
          redis.call('HSET', conv, 't', t, 'm', ARGV[a + 4], 'bc', route)
        else
          redis.call('HSET', conv, 't', t, 'm', ARGV[a + 4])
          if state[6] then redis.call('HDEL', conv, 'bc') end
        end
        if ARGV[a + 9] ~= '' then redis.call('HSET', conv, 'x', ARGV[a + 9]) end
      end
      if op == 'M' then
        -- the contact wrote: an opt-out ends, and so does an undeliverable hold
        if state[5] or state[7] then redis.call('HDEL', conv, 'oo', 'uh') end
        redis.call('EXPIRE', conv, ARGV[a + 5])
      end
      last = 1
    end
    out[#out + 1] = last
    k, a = k + 5, a + 11
  elseif op == 'N' then
    local original, old, new = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    if last == 1 then
      redis.call('HSET', new, 'alias', ARGV[a + 1])
      for _, field in ipairs({'t', 'm', 'p', 'h', 'oo', 'x', 'mh', 'uh', 'wc'}) do
        local value = redis.call('HGET', old, field)
        if value and redis.call('HEXISTS', new, field) == 0 then
          redis.call('HSET', new, field, value)
        end
      end
      redis.call('HSET', original, 'a', ARGV[a + 2])
      redis.call('EXPIRE', original, ARGV[a + 3])
      redis.call('EXPIRE', new, ARGV[a + 3])
    end
    k, a = k + 3, a + 4
  elseif op == 'C' then
    if last == 1 then
      gcra_take(KEYS[k], now_us, tonumber(ARGV[a + 1]), now_us)
    end
    k, a = k + 1, a + 2
  elseif op == 'H' then
    -- Only for an echo just published: a redelivered one paused already, and one marked by
    -- finish.lua is the echo of the gateway's own send, no person's.
    local until_s = tonumber(ARGV[a + 1])
    if last == 1 and until_s > tonumber(redis.call('HGET', KEYS[k], 'p') or '0') then
      redis.call('HSET', KEYS[k], 'p', until_s)
    end
    if last == 1 then redis.call('EXPIRE', KEYS[k], ARGV[a + 2]) end
    k, a = k + 1, a + 3
  elseif op == 'A' then
    if last == 1 and ARGV[a + 1] == '0' then
      redis.call('HSET', KEYS[k], 'disc', ARGV[a + 2])
    elseif last == 1 and ARGV[a + 1] == '1' then
      redis.call('HDEL', KEYS[k], 'disc')
    end
    k, a = k + 1, a + 3
  elseif op == 'L' then
    local t = math.min(tonumber(ARGV[a + 1]), now_s)
    if last == 1 and t > tonumber(redis.call('HGET', KEYS[k], 'seen') or '0') then
      redis.call('HSET', KEYS[k], 'seen', t)
    end
    k, a = k + 1, a + 2
  elseif op == 'V' then
    if last == 1 then
      effect_apply(ARGV[a + 1], KEYS[k], ARGV[a + 2], tonumber(ARGV[a + 3]),
                   tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), now_s)
    end
    k, a = k + 1, a + 6
  elseif op == 'O' then
    if last == 1 then redis.call('HDEL', KEYS[k], 'oo') end
    k, a = k + 1, a + 1
  elseif op == 'U' then
    redis.call('SET', KEYS[k], ARGV[a + 1], 'EX', ARGV[a + 2])
    k, a = k + 1, a + 3
  else
    return redis.error_reply('publish.lua: unknown operation ' .. tostring(op))
  end
end
return out
