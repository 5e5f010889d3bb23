-- Store an entry (fenced when a fence is given) and tell the waiting followers.
-- KEYS[1]  the entry key
-- KEYS[2]  the entry's fence key (the highest fence an accepted write carried)
-- ARGV[1]  the envelope bytes
-- ARGV[2]  the TTL in milliseconds (entry and fence key alike)
-- ARGV[3]  the namespace event channel
-- ARGV[4]  the ready message to publish
-- ARGV[5]  the writer's fencing token as a decimal string, or '' for an unfenced write
-- returns  1 when written, 0 when refused (a write with a higher fence came first)
if ARGV[5] ~= '' then
    local stored = redis.call('GET', KEYS[2])
    if stored and tonumber(stored) > tonumber(ARGV[5]) then
        return 0
    end
    redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
