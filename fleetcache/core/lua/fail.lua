-- Record that the leader's compute failed, and wake the followers so they can read it.
-- KEYS[1]  the entry's error-record key
-- ARGV[1]  the error record (JSON: {"t": exception type, "m": message})
-- ARGV[2]  the record's TTL in milliseconds
-- ARGV[3]  the namespace event channel
-- ARGV[4]  the failure message to publish
-- returns  1
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
