-- Move the namespace to a new generation: every existing entry becomes unreachable.
-- KEYS[1]  the generation key
-- ARGV[1]  the generation key's TTL in milliseconds
-- ARGV[2]  the namespace events channel
-- ARGV[3]  the generation message prefix (the generation is appended)
-- ARGV[4]  the caller's generation as a decimal string ('' when it has none)
-- returns  the new generation as a decimal string: max(old + 1, caller's + 1, server time
--          in µs), so that it is newer than what any process uses, even after a failover
--          lost the key.  PUBLISH refused by an ACL is ignored: processes then re-read the
--          key on their own (at most one retry_backoff later).
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[4]) or 0
if floor > old then
    old = floor
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local g = old + 1
if now > g then
    g = now
end
g = string.format('%.0f', g)
redis.call('SET', KEYS[1], g, 'PX', ARGV[1])
redis.pcall('PUBLISH', ARGV[2], ARGV[3] .. g)
return g
