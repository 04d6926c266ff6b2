"""How entries are laid out in Redis, and the Lua scripts that change them atomically.

One Redis hash per cache key, ``cp:{K}`` (the hash tag ``{K}`` pins it to one Cluster slot), so a lookup is one
``HGETALL`` and every change to a key is one script. Each variant ``<id>`` (a short hash of ``Entry.variant``,
RFC 9111 §4.1) has these fields:

    v:<id>   the entry in the versioned codec (proxy.storage.codec)
    m:<id>   "<expires-ms> <seq>": its own expiry (wall clock of the writers) and write order
    p:<id>   its URL path and query, for purge by prefix
    t:<id>   its tags, joined by U+001F (absent when it has none)

and the key has three bookkeeping fields: ``~n`` (the write counter), ``~c`` (how many variants) and ``~i`` (when
the key was last invalidated, ms).

RFC 9111 §4.4 across processes: a delete or purge script does not drop the hash outright; it drops the variants and
leaves ``~i`` = its ``now`` (the writer's wall clock, ``Clock.now``) for ``INVALIDATION_KEEP_MS``, and the put script
refuses an entry whose fetch began (``since``) at or before ``~i``: a fetch already in flight when the write's
invalidation came cannot store the old representation, whichever worker or host fetched it. The comparison is
between two hosts' clocks: it assumes they agree within a small skew (NTP), much smaller than the time a fetch
takes; a host whose clock runs ahead by more could still store a response that began before the invalidation.

The key's own ``PEXPIRE`` is the latest expiry of its variants (or of ``~i``) (relative, so Redis's clock need not
agree with ours); expired variants are filtered on read and dropped by the next script that touches the key. Per
URL key, a set ``cp:grp:{url key}`` lists the suffixed keys of its group (``storage.base.GROUP_SEP``: keys that
include request headers or cookies), so that deleting the URL reaches them all. A fetch's cross-process lease is
``cp:{K}:lease`` (same slot as the entry). Every name under ``cp:`` is spelled in this module only.

Purge indexes, so that a purge by prefix or tag costs what it removes, not the size of the keyspace:

    cp:paths:{s}      sorted set, every score 0: "<path>\0<key>" for each variant stored, so a prefix is one
                      ``ZRANGEBYLEX`` range (s = CRC-32 of the key mod ``INDEX_SHARDS``: 16 shards spread the writes
                      over a cluster; a purge reads all 16)
    cp:paths:{s}:exp  sorted set, the same members scored by the latest expiry (ms) written for them
    cp:tagged:{tag}   sorted set: the keys with a variant carrying the tag, scored by the latest expiry

A member says "this key had such a variant until at most then"; the purge scripts check each variant's own ``p:`` /
``t:`` field, so a member that went stale (its variant replaced, deleted, evicted by Redis) removes nothing and
counts nothing. Members leave only by time: each index write drops up to ``INDEX_TRIM`` members whose expiry is more
than ``INDEX_GRACE_MS`` past (at most one member comes per write, so the backlog drains), and the index keys expire
``INDEX_GRACE_MS`` after their last member. A purge does not remove the members it read: a put of the same key
landing between its delete and its removal would be left out of the index, unpurgeable for its lifetime.

The indexes are written before the entry, never after: an entry is never live without its members. On one server
the put script writes them in the same atomic script (its KEYS name them); on a cluster they live in other slots,
so the ``INDEX`` script runs on each first, then the put script.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

from proxy.storage.marks import KEEP

INVALIDATION_KEEP_MS = int(KEEP * 1000)  # how long ``~i`` outlives the variants it cleared
INVALIDATED_FIELD = "~i"  # the field of an entry hash that says when the key was last invalidated (ms)

INDEX_SHARDS: Final = 16  # path index shards (part of the layout: changing it orphans the members already written)
INDEX_TRIM: Final = 32  # expired members an index write drops at most
INDEX_GRACE_MS: Final = 30_000  # how long past its expiry a member stays (writers' clocks may disagree a little)

_ENTRY_PREFIX = "cp:{"
SCAN_PATTERN = _ENTRY_PREFIX + "*"
TAG_SEP = "\x1f"
LEASE_DONE_CHANNEL = "cp:lease-done"  # a lease holder announces a key done (``proxy.storage.lease``)
INVALIDATION_CHANNEL = "cp:inval"  # two-tier L1 invalidations (``proxy.storage.tiered``)


def entry_key(key: str) -> str:
    """The hash of cache key ``key``: ``cp:{K}``, the hash tag pinning it to one Cluster slot."""
    return f"{_ENTRY_PREFIX}{key}}}"


def entry_key_bytes(key: bytes) -> bytes:
    """``entry_key`` for a key read back from Redis as bytes (a tag set's member)."""
    return _ENTRY_PREFIX.encode() + key + b"}"


def lease_key(key: str) -> str:
    """The cross-process single-flight lease of ``key``, in the entry's slot."""
    return f"{entry_key(key)}:lease"


def tag_index(tag: str) -> str:
    """The keys carrying ``tag``, scored by their latest expiry."""
    return f"cp:tagged:{{{tag}}}"


def path_shard(key: str) -> int:
    """Which path index shard lists the variants of ``key``."""
    return zlib.crc32(text(key)) % INDEX_SHARDS


def path_index(shard: int) -> str:
    """The members of one path index shard in lexicographic order (every score 0)."""
    return f"cp:paths:{{{shard}}}"


def path_expiry(shard: int) -> str:
    """The same members scored by expiry, for trimming (the same slot as ``path_index``)."""
    return f"cp:paths:{{{shard}}}:exp"


def path_member(path: bytes, key: bytes) -> bytes:
    """``<path>\\0<key>`` (both as ``text`` gives them; ``PUT`` builds the same in Lua): ordered by path first, so
    a prefix is a range. A cache key never holds NUL (``proxy.cache.keys``: hex digests), so the key is what follows
    the last one."""
    return path + b"\0" + key


def member_key(member: bytes) -> bytes:
    """The cache key of a ``path_member``."""
    return member.rpartition(b"\0")[2]


def put_keys(key: str, tags: tuple[str, ...]) -> list[str]:
    """The KEYS of ``PUT`` on one server: the entry, its path index shard (by expiry, then ordered), its tags' indexes.
    On a cluster ``PUT`` gets the first alone and ``INDEX`` the others, before it."""
    shard = path_shard(key)
    return [entry_key(key), path_expiry(shard), path_index(shard), *(tag_index(tag) for tag in tags)]


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """``ZRANGEBYLEX`` bounds of the members whose path starts with ``prefix``: UTF-8 never has a 0xFF byte, so
    every such member sorts below ``prefix + 0xFF``."""
    wanted = text(prefix)
    return b"[" + wanted, b"[" + wanted + b"\xff"


def group_key(url_key: str) -> str:
    return f"cp:grp:{{{url_key}}}"


def variant_id(variant: str) -> str:
    return hashlib.blake2b(variant.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def text(value: str) -> bytes:
    """Text as the scripts compare it: UTF-8 keeps ``startswith`` meaning the same on bytes."""
    return value.encode("utf-8", "surrogatepass")


# Shared Lua helpers. ``live`` reads the variants' meta fields, dropping expired ones; ``drop`` removes one
# variant; ``finish`` rewrites the bookkeeping fields and the key's expiry, or deletes the key when it is empty;
# ``remove_where`` drops the live variants a test picks and returns how many; ``index`` adds one member to a purge
# index (``lex``: the path index's ordered twin, nil for a tag index), trims it and sets its keys' expiry.
_LUA_COMMON = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local function drop(id)
  redis.call('HDEL', h, 'v:' .. id, 'm:' .. id, 'p:' .. id, 't:' .. id)
end
local function live()
  local out = {}
  for _, f in ipairs(redis.call('HKEYS', h)) do
    if string.sub(f, 1, 2) == 'm:' then
      local id = string.sub(f, 3)
      local meta = redis.call('HGET', h, f)
      local exp, seq = string.match(meta, '^(%d+) (%d+)$')
      exp = tonumber(exp)
      if exp == nil or exp <= now then
        drop(id)
      else
        out[#out + 1] = {id = id, exp = exp, seq = tonumber(seq)}
      end
    end
  end
  return out
end
local function finish(vars)
  local keep_until = tonumber(redis.call('HGET', h, '~i') or '-1') + KEEP_MS
  if #vars == 0 then
    if keep_until > now then
      redis.call('HDEL', h, '~c')
      redis.call('PEXPIRE', h, keep_until - now)
    else
      redis.call('DEL', h)
    end
    return
  end
  local maxexp = 0
  for _, v in ipairs(vars) do
    if v.exp > maxexp then maxexp = v.exp end
  end
  redis.call('HSET', h, '~c', #vars)
  redis.call('PEXPIRE', h, math.max(maxexp, keep_until) - now + 1000)
end
local function index(byexp, lex, member, exp)
  if lex then redis.call('ZADD', lex, 0, member) end
  redis.call('ZADD', byexp, 'GT', exp, member)
  local old = redis.call('ZRANGEBYSCORE', byexp, '-inf', now - GRACE_MS, 'LIMIT', 0, TRIM)
  if #old > 0 then
    redis.call('ZREM', byexp, unpack(old))
    if lex then redis.call('ZREM', lex, unpack(old)) end
  end
  local last = redis.call('ZRANGE', byexp, -1, -1, 'WITHSCORES')
  local ttl = tonumber(last[2]) - now + GRACE_MS
  redis.call('PEXPIRE', byexp, ttl)
  if lex then redis.call('PEXPIRE', lex, ttl) end
end
local function mark_invalidated()
  local was = tonumber(redis.call('HGET', h, '~i') or '0')
  redis.call('HSET', h, '~i', math.max(was, now))
end
local function remove_where(matches)
  local kept, n = {}, 0
  for _, v in ipairs(live()) do
    if matches(v.id) then
      drop(v.id)
      n = n + 1
    else
      kept[#kept + 1] = v
    end
  end
  finish(kept)
  return n
end
local function has_tag(id, tag)
  local tags = redis.call('HGET', h, 't:' .. id)
  if not tags then return false end
  for t in string.gmatch(tags, '[^\\31]+') do
    if t == tag then return true end
  end
  return false
end
"""


def _with_helpers(body: str) -> str:
    constants = {"KEEP_MS": INVALIDATION_KEEP_MS, "GRACE_MS": INDEX_GRACE_MS, "TRIM": INDEX_TRIM}
    common = _LUA_COMMON
    for name, value in constants.items():
        common = common.replace(name, str(value))
    return common + body


# KEYS: the entry hash; on one server also the path index shard of the key (``path_expiry``, ``path_index``) and
# the ``tag_index`` of each of its tags, written in this script (on a cluster: by ``INDEX``, before). ARGV: now-ms,
# id, value, expires-ms, path, tags, max-variants, since-ms ('' for none), key. Returns the number of variants kept,
# or -1 when the key was invalidated at or after since-ms (nothing changed).
PUT = _with_helpers("""
local since = tonumber(ARGV[8])
if since ~= nil and since <= tonumber(redis.call('HGET', h, '~i') or '-1') then
  return -1
end
local id, exp = ARGV[2], tonumber(ARGV[4])
local vars, kept = live(), {}
for _, v in ipairs(vars) do
  if v.id ~= id then kept[#kept + 1] = v end
end
drop(id)
if exp > now then
  local max = tonumber(ARGV[7])
  while #kept >= max do
    local oldest = 1
    for i = 2, #kept do
      if kept[i].seq < kept[oldest].seq then oldest = i end
    end
    drop(kept[oldest].id)
    table.remove(kept, oldest)
  end
  local seq = redis.call('HINCRBY', h, '~n', 1)
  redis.call('HSET', h, 'v:' .. id, ARGV[3], 'm:' .. id, ARGV[4] .. ' ' .. seq, 'p:' .. id, ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', h, 't:' .. id, ARGV[6]) end
  kept[#kept + 1] = {id = id, exp = exp, seq = seq}
  if #KEYS > 1 then
    index(KEYS[2], KEYS[3], ARGV[5] .. '\\0' .. ARGV[9], exp)
    for i = 4, #KEYS do index(KEYS[i], nil, ARGV[9], exp) end
  end
end
finish(kept)
return #kept
""")

# KEYS: a purge index (``path_expiry`` and ``path_index`` of one shard, or one ``tag_index``). ARGV: now-ms, member,
# expires-ms. Adds the member unless it has already expired.
INDEX = _with_helpers("""
local exp = tonumber(ARGV[3])
if exp > now then index(KEYS[1], KEYS[2], ARGV[2], exp) end
return 0
""")

# ARGV: now-ms. Returns how many live variants were removed; leaves ``~i``.
DELETE = _with_helpers("""
local n = #live()
mark_invalidated()
local mark = redis.call('HGET', h, '~i')
redis.call('DEL', h)
redis.call('HSET', h, '~i', mark)
finish({})
return n
""")

# ARGV: now-ms, tag. Returns how many live variants carrying the tag were removed; leaves ``~i``.
DELETE_TAG = _with_helpers("""
mark_invalidated()
return remove_where(function(id) return has_tag(id, ARGV[2]) end)
""")

# ARGV: now-ms, prefix. Returns how many live variants whose path starts with the prefix were removed; leaves ``~i``.
DELETE_PREFIX = _with_helpers("""
local prefix = ARGV[2]
mark_invalidated()
return remove_where(function(id)
  local p = redis.call('HGET', h, 'p:' .. id) or ''
  return string.sub(p, 1, #prefix) == prefix
end)
""")
