-- Move one dedup mark of the one-key-per-event model (gw:dd:*) into its bucket hash
-- (marks.lua), keeping the higher value (a status rank), then delete the old key.
-- uses: marks
-- KEYS: the old mark, then its three bucket hashes. ARGV: dedup TTL (s), the field.
-- Returns 1 moved, 0 gone meanwhile (expired, or moved by another run).
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local now_s = tonumber(redis.call('TIME')[1])
local ttl = tonumber(ARGV[1])
local found = mark_get(2, ARGV[2], ttl, now_s)
if not found or (tonumber(value) or 1) > (tonumber(found) or 1) then
  mark_set(2, ARGV[2], value, ttl, now_s)
end
redis.call('DEL', KEYS[1])
return 1
