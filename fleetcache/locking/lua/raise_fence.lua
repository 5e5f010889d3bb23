-- Redlock fence write-back: raise this node's fence counter to at least ARGV[1].
-- KEYS[1]  the lock's fence counter key on this node
-- ARGV[1]  the fence about to be handed out, as a decimal string
-- ARGV[2]  the counter's TTL in milliseconds
-- returns  the counter after the call, as a decimal string
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local f = tonumber(ARGV[1])
if f > c then c = f end
redis.call('SET', KEYS[1], string.format('%.0f', c), 'PX', ARGV[2])
return string.format('%.0f', c)
