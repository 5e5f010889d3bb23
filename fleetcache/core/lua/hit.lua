-- A hit with hot-key bookkeeping, in the hit's one round trip (used when hot keys are on).
-- KEYS[1]  the entry key
-- KEYS[2]  the entry's read counter (expires with its window)
-- KEYS[3]  the entry's slid fresh-until, in ms (lives as long as the entry it extends)
-- KEYS[4]  the entry's fence key (kept alive as long as the entry)
-- ARGV[1]  reads within the window that make the entry hot
-- ARGV[2]  the counting window in ms
-- ARGV[3]  hot_ttl in ms: a hot hit slides freshness to now + hot_ttl
-- ARGV[4]  stale_ttl in ms: the entry is kept that long past its freshness
-- ARGV[5]  max_age in ms, or '' for no bound: freshness never slides past created + max_age
-- ARGV[6]  reads to count: this one plus those the process served with plain GETs since
-- returns  nil when there is no entry, else
--          {entry, slid fresh-until in ms (0: none), count, the window's remaining ms}
--          count is the reads in the window so far (0 when they could not be counted).
-- Exact fixed-window counting: the first read starts the window.  A read slides the
-- freshness only forward (never shorter), and the key's TTL follows.  The bookkeeping
-- writes run under pcall: a Redis refusing writes (OOM, READONLY) still serves the hit.
local v = redis.call('GET', KEYS[1])
if not v then
    return false
end
local slid = tonumber(redis.call('GET', KEYS[3]) or '0')
local n = redis.pcall('INCRBY', KEYS[2], ARGV[6])
if type(n) ~= 'number' then
    return {v, slid, 0, 0}
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
    redis.pcall('PEXPIRE', KEYS[2], ARGV[2])
    left = tonumber(ARGV[2])
end
if n < tonumber(ARGV[1]) then
    return {v, slid, n, left}
end
-- The envelope is FC1<tag>[created, fresh_until, ...]: seconds, as JSON numbers.
local created, fresh = string.match(v, '^FC1.%[([^,]+),([^,]+),')
created = tonumber(created)
fresh = tonumber(fresh)
if not created or not fresh then
    return {v, slid, n, left}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local target = now + tonumber(ARGV[3])
if ARGV[5] ~= '' then
    local cap = created * 1000 + tonumber(ARGV[5])
    if cap < target then
        target = cap
    end
end
local current = fresh * 1000
if slid > current then
    current = slid
end
if target > current then
    local keep = math.floor(target + tonumber(ARGV[4]) - now)
    if keep > 0 then
        local ok = redis.pcall('SET', KEYS[3], string.format('%.0f', target), 'PX', keep)
        if type(ok) == 'table' and ok.ok then
            if redis.call('PTTL', KEYS[1]) < keep then
                redis.call('PEXPIRE', KEYS[1], keep)
            end
            if redis.call('PTTL', KEYS[4]) < keep then
                redis.call('PEXPIRE', KEYS[4], keep)
            end
            slid = target
        end
    end
end
return {v, slid, n, left}
