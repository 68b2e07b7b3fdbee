-- Delete the outbox entries that every consumer group is done with.
-- KEYS[1] the outbox stream. Returns the number of entries deleted.
-- A group still needs everything from its oldest unacknowledged (pending) entry on or, when
-- nothing is pending, everything after the last entry it was given. Groups created by anyone
-- count; with no group at all nothing is trimmed. XTRIM MINID deletes the ids below the
-- smallest of those. One script, so no group can move (or be created) in between.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local MAX_SEQ = '18446744073709551615'
-- Stream ids are 'ms-seq' in decimal without leading zeros: a shorter number is smaller.
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function before(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if a_ms ~= b_ms then return less(a_ms, b_ms) end
  return less(a_seq, b_seq)
end
local function plus_one(digits)
  local i = #digits
  while i > 0 and string.sub(digits, i, i) == '9' do i = i - 1 end
  if i == 0 then return '1' .. string.rep('0', #digits) end
  return string.sub(digits, 1, i - 1) .. string.char(string.byte(digits, i) + 1)
    .. string.rep('0', #digits - i)
end
local function after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if seq == MAX_SEQ then
    if ms == MAX_SEQ then return id end  -- the last id there can be
    return plus_one(ms) .. '-0'
  end
  return ms .. '-' .. plus_one(seq)
end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local needed
  if tonumber(info['pending']) > 0 then
    needed = redis.call('XPENDING', KEYS[1], info['name'])[2]
  else
    needed = after(info['last-delivered-id'])
  end
  if floor == nil or before(needed, floor) then floor = needed end
end
if floor == nil then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
