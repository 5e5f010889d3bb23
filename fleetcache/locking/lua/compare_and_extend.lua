-- Extend a lease: reset the lock key's TTL only if it still holds our token.
-- KEYS[1]  the lock key
-- ARGV[1]  the lease token
-- ARGV[2]  the new TTL in milliseconds
-- returns  1 if the key held the token and its TTL was reset, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
