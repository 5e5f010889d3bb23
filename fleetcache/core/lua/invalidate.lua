-- Move the namespace to a new generation: every existing entry becomes unreachable.
-- KEYS[1]  the generation key
-- ARGV[1]  the generation key's TTL in milliseconds
-- ARGV[2]  the namespace event channel
-- returns  the new generation, as a decimal string: max(old + 1, server time in µs)
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local g = old + 1
if now > g then g = now end
g = string.format('%.0f', g)
redis.call('SET', KEYS[1], g, 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], 'g|' .. g)
return g
