-- A new leader's double-check: read the entry, take the entry's fence, clear an old error.
-- KEYS[1]  the entry key
-- KEYS[2]  the entry's error-record key
-- KEYS[3]  the entry's fence key (the highest fence a leader of this entry claimed)
-- ARGV[1]  the lease's fence as a decimal string, or '' when the lock gives none
-- ARGV[2]  the fence key's TTL in milliseconds
-- returns  {the stored envelope bytes or nil, the leader's fence as a decimal string}
-- Without a lock fence the leader gets max(stored + 1, server time in µs).  The fence key
-- is raised to the leader's fence, so that a superseded leader (its lease expired while it
-- was paused) can neither write the entry nor its error record once this leader claimed
-- it (write.lua and record.lua refuse a fence below the stored one).  A leader whose fence is
-- below the stored one (it was itself superseded before claiming) changes nothing.
local stored = tonumber(redis.call('GET', KEYS[3]) or '0')
local fence
if ARGV[1] == '' then
    local t = redis.call('TIME')
    fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if stored + 1 > fence then
        fence = stored + 1
    end
else
    fence = tonumber(ARGV[1])
end
if fence >= stored then
    redis.call('DEL', KEYS[2])
    redis.call('SET', KEYS[3], string.format('%.0f', fence), 'PX', ARGV[2])
end
return {redis.call('GET', KEYS[1]), string.format('%.0f', fence)}
