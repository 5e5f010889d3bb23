-- Store an entry (fenced when a fence is given) and wake the waiting followers.
-- KEYS[1]  the entry key
-- KEYS[2]  the entry's fence key (the highest fence a leader of this entry claimed)
-- ARGV[1]  the envelope bytes
-- ARGV[2]  the TTL in milliseconds (entry and fence key alike)
-- ARGV[3]  the channel: the namespace's, or on Redis Cluster the entry's shard channel
-- ARGV[4]  the ready message to publish
-- ARGV[5]  the writer's fence as a decimal string, or '' for an unfenced write (set())
-- ARGV[6]  'PUBLISH', or 'SPUBLISH' for the shard channel (Redis Cluster >= 7.0)
-- returns  0 refused (a leader with a higher fence claimed the entry), 1 written and
--          published, 2 written but the PUBLISH was refused (an ACL without the channel)
if ARGV[5] ~= '' then
    local stored = redis.call('GET', KEYS[2])
    if stored and tonumber(stored) > tonumber(ARGV[5]) then
        return 0
    end
    redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local published = redis.pcall(ARGV[6], ARGV[3], ARGV[4])
if type(published) == 'table' and published.err then
    return 2
end
return 1
