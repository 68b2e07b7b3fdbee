-- Give a dispatch slot back: the worker resumed too late after presend.lua to trust that
-- its request would reach the provider inside the slot, so it did not send.
-- KEYS: command record, dispatch log. ARGV: owner
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] then
  redis.call('HSET', KEYS[1], 's', 'waiting')
end
return 1
