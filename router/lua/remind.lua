-- Take one due member of an assistant's paused set, once across all processes.
-- KEYS: paused set, conversation (both in the inbox's slot)
-- ARGV: conversation id, its score as read (unix s of the last human activity), now (unix s)
-- Returns {0} when another process took it, a human acted since (the score moved), or the
-- conversation is no longer paused (its echo pause ran out: taken out silently); else
-- {1, text excerpt, its time, its message id} ('' where unknown): send the reminder.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return {0} end
redis.call('ZREM', KEYS[1], ARGV[1])
local state = redis.call('HMGET', KEYS[2], 'h', 'p', 'x', 't', 'm')
if state[1] ~= '1' and tonumber(state[2] or '0') <= tonumber(ARGV[3]) then return {0} end
return {1, state[3] or '', state[4] or '', state[5] or ''}
