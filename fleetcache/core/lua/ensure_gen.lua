-- Read the namespace generation, creating it when missing and healing it when it went back.
-- KEYS[1]  the generation key
-- ARGV[1]  the generation key's TTL in milliseconds (refreshed on every call)
-- ARGV[2]  the namespace events channel
-- ARGV[3]  the generation message prefix (the generation is appended)
-- ARGV[4]  the caller's generation as a decimal string ('' when it has none): a floor
-- returns  {the generation as a decimal string, 1 if a new one was published else 0}
-- A missing key becomes max(server time in µs, floor): larger than any generation handed
-- out before (they were all server times or counters below them), so an expired key can
-- never make old entries reachable again.  A key below the caller's generation (a failover
-- lost the latest invalidate) is raised to it, so that every process converges on the
-- newest generation any of them read from Redis.  A changed generation is published
-- (PUBLISH refused by an ACL is ignored: processes then re-read the key on their own).
local floor = tonumber(ARGV[4]) or 0
local g = tonumber(redis.call('GET', KEYS[1]) or '')
if g and g >= floor then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    return {string.format('%.0f', g), 0}
end
if not g then
    local t = redis.call('TIME')
    g = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if floor > g then
    g = floor
end
g = string.format('%.0f', g)
redis.call('SET', KEYS[1], g, 'PX', ARGV[1])
redis.pcall('PUBLISH', ARGV[2], ARGV[3] .. g)
return {g, 1}
