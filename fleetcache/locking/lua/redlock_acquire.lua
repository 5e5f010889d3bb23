-- One Redlock node's part of an acquire: take the lock and bump this node's fence counter.
-- KEYS[1]  the lock key
-- KEYS[2]  the lock's fence counter key on this node
-- KEYS[3]  this node's boot marker (used only when ARGV[4] > 0)
-- ARGV[1]  the lease token
-- ARGV[2]  the lease TTL in milliseconds
-- ARGV[3]  TTL in milliseconds of the counter and the boot marker (refreshed on use)
-- ARGV[4]  restart delay in milliseconds: a node whose data is new abstains that long ('0': off)
-- returns  {granted (1 or 0), counter as a decimal string, abstained (1 or 0)}
--          the counter is the bumped value when granted, the current value otherwise.
-- A missing counter (first use, expired, or the node restarted empty) starts from the
-- server time in microseconds, so it is not behind the fences handed out before.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local c = redis.call('GET', KEYS[2])
if c then c = tonumber(c) else c = now_us end
if tonumber(ARGV[4]) > 0 then
    local boot = redis.call('GET', KEYS[3])
    if boot then
        redis.call('PEXPIRE', KEYS[3], ARGV[3])
        boot = tonumber(boot)
    else
        boot = now_us
        redis.call('SET', KEYS[3], string.format('%.0f', boot), 'PX', ARGV[3])
    end
    if now_us - boot < tonumber(ARGV[4]) * 1000 then
        return {0, string.format('%.0f', c), 1}
    end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    c = c + 1
    redis.call('SET', KEYS[2], string.format('%.0f', c), 'PX', ARGV[3])
    return {1, string.format('%.0f', c), 0}
end
return {0, string.format('%.0f', c), 0}
