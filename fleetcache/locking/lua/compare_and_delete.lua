-- Release a lease: delete the lock key only if it still holds our token.
-- KEYS[1]  the lock key
-- ARGV[1]  the lease token
-- returns  1 if the key held the token and was deleted, 0 otherwise (expired or taken)
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
