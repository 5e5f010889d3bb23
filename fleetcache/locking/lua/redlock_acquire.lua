-- One Redlock node's part of an acquire: take the lock and bump this node's fence counter.
-- KEYS[1]  the lock key
-- KEYS[2]  the lock's fence counter key on this node
-- KEYS[3]  this node's boot marker: when this node's data began (first request after a start)
-- ARGV[1]  the lease token
-- ARGV[2]  the lease TTL in milliseconds
-- ARGV[3]  TTL in milliseconds of the counter (refreshed on every grant)
-- ARGV[4]  restart delay in milliseconds: a node whose data is newer abstains ('0': off)
-- ARGV[5]  TTL in milliseconds of the boot marker (refreshed on use; at least 7 days)
-- returns  {granted (1 or 0), counter as a decimal string, abstained (1 or 0)}
--          the counter is the bumped value when granted, the current value otherwise.
-- A missing counter (a new name, an expired counter, or a node that lost its data) starts
-- from the server clock, in microseconds: on a node whose data is older than 3 s, at the
-- current whole second (seconds * 10^6: equal on every node reading the same second, so a
-- new name needs no write-back round); on a node whose data is younger (it just started,
-- maybe empty), at now + 2 s, ahead of every fence handed out before its data began.
-- (The argument is in fleetcache/locking/quorum.py.)
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_us = sec * 1000000 + tonumber(t[2])
local boot = redis.call('GET', KEYS[3])
if boot then
    boot = tonumber(boot)
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
else
    boot = now_us
    redis.call('SET', KEYS[3], string.format('%.0f', boot), 'PX', ARGV[5])
end
local c = redis.call('GET', KEYS[2])
if c then
    c = tonumber(c)
elseif now_us - boot < 3000000 then
    c = now_us + 2000000
else
    c = sec * 1000000
end
if tonumber(ARGV[4]) > 0 and now_us - boot < tonumber(ARGV[4]) * 1000 then
    return {0, string.format('%.0f', c), 1}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    c = c + 1
    redis.call('SET', KEYS[2], string.format('%.0f', c), 'PX', ARGV[3])
    return {1, string.format('%.0f', c), 0}
end
return {0, string.format('%.0f', c), 0}
