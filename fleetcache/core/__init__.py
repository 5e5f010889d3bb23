"""The cache: keys, codec, envelope, policy, clock, and the cache flow."""
