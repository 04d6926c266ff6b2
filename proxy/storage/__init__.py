"""Stores for cached entries: memory (byte-bounded LRU), Redis, Redis Cluster, and a memory L1 in front of Redis."""
