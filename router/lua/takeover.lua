-- An echo paused the assistant (publish.lua H, already run): should the staff hear of it?
-- KEYS: conversation, paused set (both in the inbox's slot)
-- ARGV: conversation id, start (the echo's time, unix s), pause end, keep for reminders (1/0)
-- Returns {notify (1/0), text excerpt, its time, its message id} ('' where unknown).
--
-- One notice per stretch of echo pauses: `q` remembers the end of the pause a notice was
-- sent for, so a person's further messages inside it notify nothing; an echo after it ran
-- out (or after a handback, which forgets `q`) notifies again. Under a handoff the staff
-- were told already: nothing. A reminder's clock restarts with every echo (ZADD GT).
local state = redis.call('HMGET', KEYS[1], 'q', 'h', 'x', 't', 'm')
local covered = tonumber(state[1] or '0')
local notify = 0
if state[2] ~= '1' and covered < tonumber(ARGV[2]) then notify = 1 end
if tonumber(ARGV[3]) > covered then redis.call('HSET', KEYS[1], 'q', ARGV[3]) end
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1]) end
return {notify, state[3] or '', state[4] or '', state[5] or ''}
