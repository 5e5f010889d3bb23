-- A new leader's double-check: read the entry and clear a previous leader's error record.
-- KEYS[1]  the entry key
-- KEYS[2]  the entry's error-record key
-- returns  the stored envelope bytes, or nil when there is none
redis.call('DEL', KEYS[2])
return redis.call('GET', KEYS[1])
