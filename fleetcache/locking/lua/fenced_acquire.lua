-- Acquire a fenced lease: SET NX PX, and on success hand out the next fencing token.
-- KEYS[1]  the lock key
-- KEYS[2]  the lock's fence counter key
-- ARGV[1]  the lease token
-- ARGV[2]  the lease TTL in milliseconds
-- ARGV[3]  the fence counter's TTL in milliseconds (refreshed on every grant)
-- returns  the fence as a decimal string when granted, false (nil) when the lock is held
-- fence = max(counter + 1, server time in microseconds): strictly larger than every fence
-- granted before while the counter lives, and still larger after the counter expired as
-- long as the server clock has not gone back by more than the gap since the last grant.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return false
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local t = redis.call('TIME')
local fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
if counter + 1 > fence then
    fence = counter + 1
end
fence = string.format('%.0f', fence)
redis.call('SET', KEYS[2], fence, 'PX', ARGV[3])
return fence
