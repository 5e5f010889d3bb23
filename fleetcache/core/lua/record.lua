-- Leave a short-lived record for the followers of one computation, fenced, and wake them:
-- a failed leader's failure record (…:err), or a value cache_if refused (…:handoff).
-- KEYS[1]  the record's key
-- KEYS[2]  the entry's fence key (the highest fence a leader of this entry claimed)
-- ARGV[1]  the record (failure JSON, see fleetcache/core/failures.py; or envelope bytes)
-- ARGV[2]  the record's TTL in milliseconds
-- ARGV[3]  the channel: the namespace's, or on Redis Cluster the entry's shard channel
-- ARGV[4]  the message to publish
-- ARGV[5]  the leader's fence as a decimal string
-- ARGV[6]  'PUBLISH', or 'SPUBLISH' for the shard channel (Redis Cluster >= 7.0)
-- returns  0 refused (a newer leader claimed the entry: its followers must not see this
--          record), 1 recorded and published, 2 recorded but the PUBLISH was refused
local stored = redis.call('GET', KEYS[2])
if stored and tonumber(stored) > tonumber(ARGV[5]) then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local published = redis.pcall(ARGV[6], ARGV[3], ARGV[4])
if type(published) == 'table' and published.err then
    return 2
end
return 1
