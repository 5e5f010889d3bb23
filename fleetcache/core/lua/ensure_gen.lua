-- Read the namespace generation, creating it when missing.
-- KEYS[1]  the generation key
-- ARGV[1]  the generation key's TTL in milliseconds (refreshed on every call)
-- ARGV[2]  the namespace event channel
-- returns  the generation, as a decimal string
-- A new generation is the server time in microseconds, larger than any generation handed
-- out before (they were all server times or counters below them), so an expired generation
-- key can never make old entries reachable again.  A newly created generation is published
-- so that every process adopts it.
local g = redis.call('GET', KEYS[1])
if g then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    return g
end
local t = redis.call('TIME')
g = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('SET', KEYS[1], g, 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], 'g|' .. g)
return g
