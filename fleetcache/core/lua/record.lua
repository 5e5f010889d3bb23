-- Record that the leader's compute failed, and wake the followers so they can read it.
-- KEYS[1]  the entry's error-record key
-- KEYS[2]  the entry's fence key (the highest fence a leader of this entry claimed)
-- ARGV[1]  the failure record (JSON, see fleetcache/core/failures.py)
-- ARGV[2]  the record's TTL in milliseconds
-- ARGV[3]  the namespace events channel
-- ARGV[4]  the failure message to publish
-- ARGV[5]  the failed leader's fence as a decimal string
-- returns  0 refused (a newer leader claimed the entry: its followers must not see this
--          failure), 1 recorded and published, 2 recorded but the PUBLISH was refused
local stored = redis.call('GET', KEYS[2])
if stored and tonumber(stored) > tonumber(ARGV[5]) then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local published = redis.pcall('PUBLISH', ARGV[3], ARGV[4])
if type(published) == 'table' and published.err then
    return 2
end
return 1
