"""Every eviction policy passes one mixin (the cachetools manner); then each policy's own order, by its paper."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pytest

from proxy.storage.eviction import FIFO, LFU, LRU, POLICIES, S3FIFO, SIEVE, EvictionPolicy, make_policy


def fill(policy: EvictionPolicy[Any], keys: list[str] | str, size: int = 1) -> None:
    """Insert each key, evicting down to the budget after each insert (what a cache does)."""
    for key in keys:
        policy.insert(key, size)
        while policy.used > policy.budget:
            policy.evict()


class PolicyContract:
    """What every policy guarantees; a subclass names the class under test."""

    policy_class: ClassVar[type[EvictionPolicy[Any]]]

    def make(self, budget: int) -> EvictionPolicy[Any]:
        return self.policy_class(budget)

    def test_used_is_the_sum_of_sizes_held_through_random_operations(self) -> None:
        rng = random.Random(12)
        policy = self.make(5000)
        held: dict[int, int] = {}
        for _ in range(5000):
            key = rng.randrange(300)
            action = rng.random()
            if key in held and action < 0.6:
                policy.touch(key)
            elif key in held:
                policy.remove(key)
                del held[key]
            else:
                size = rng.randrange(1, 400)
                policy.insert(key, size)
                held[key] = size
                while policy.used > policy.budget:
                    victim, queue = policy.evict()
                    assert queue in self.policy_class.queues
                    del held[victim]
            assert policy.used == sum(held.values()) <= policy.budget
            assert len(policy) == len(held)
        assert all(key in policy for key in held)

    def test_victim_is_held_and_stays_until_removed(self) -> None:
        policy = self.make(3)
        fill(policy, "abc")
        policy.touch("b")
        key, _ = policy.victim()
        assert key in policy and len(policy) == 3
        policy.remove(key)
        assert key not in policy and policy.used == 2

    def test_victim_of_an_empty_policy_is_a_lookup_error(self) -> None:
        policy = self.make(10)
        with pytest.raises(LookupError):
            policy.victim()

    def test_removing_every_key_in_any_order_empties_it(self) -> None:
        policy = self.make(100)
        keys = [f"k{i}" for i in range(50)]
        fill(policy, keys)
        for key in keys[::3]:
            policy.touch(key)
        random.Random(3).shuffle(keys)
        for key in keys:
            policy.remove(key)
        assert (len(policy), policy.used) == (0, 0)
        with pytest.raises(LookupError):
            policy.victim()

    def test_clear_forgets_everything(self) -> None:
        policy = self.make(4)
        fill(policy, "abcdefg")
        policy.clear()
        assert (len(policy), policy.used, "g" in policy) == (0, 0, False)
        fill(policy, "xy")
        assert len(policy) == 2

    def test_lookup_and_evict_do_what_touch_victim_and_remove_do(self) -> None:
        """The simulator's one-call shortcuts (``lookup``, ``evict``) take the same decisions as the store's calls."""
        rng = random.Random(7)
        trace = [(rng.randrange(120), rng.randrange(1, 30)) for _ in range(3000)]
        fast, slow = self.make(600), self.make(600)
        fast_log, slow_log = [], []
        for key, size in trace:
            if fast.lookup(key):
                fast_log.append(("hit", key))
            else:
                fast.insert(key, size)
                while fast.used > fast.budget:
                    fast_log.append(fast.evict())
            if key in slow:
                slow.touch(key)
                slow_log.append(("hit", key))
            else:
                slow.insert(key, size)
                while slow.used > slow.budget:
                    victim = slow.victim()
                    slow.remove(victim[0])
                    slow_log.append(victim)
        assert fast_log == slow_log
        assert fast.lookup(-1) is False

    keeps_hit_keys: ClassVar[bool] = True

    def test_a_hot_key_touched_before_each_insert_is_never_evicted(self) -> None:
        """Every policy but FIFO keeps a key that is hit between every two inserts (FIFO ignores hits: it goes)."""
        policy = self.make(10)
        fill(policy, ["hot"])
        kept = []
        for i in range(200):
            policy.touch("hot")
            fill(policy, [f"cold{i}"])
            kept.append("hot" in policy)
        assert all(kept) is self.keeps_hit_keys


class TestLRU(PolicyContract):
    policy_class = LRU

    def test_lru_evicts_the_least_recently_used(self) -> None:
        policy = self.make(3)
        fill(policy, "abc")
        policy.touch("a")
        assert policy.evict() == ("b", "lru")
        assert policy.evict() == ("c", "lru")


class TestFIFO(PolicyContract):
    policy_class = FIFO
    keeps_hit_keys = False

    def test_fifo_evicts_in_insertion_order_whatever_the_hits(self) -> None:
        policy = self.make(3)
        fill(policy, "abc")
        policy.touch("a")
        assert [policy.evict()[0] for _ in range(3)] == ["a", "b", "c"]


class TestLFU(PolicyContract):
    policy_class = LFU

    def test_lfu_evicts_the_least_frequent_ties_to_the_oldest(self) -> None:
        policy = LFU[str](4)
        fill(policy, "abcd")
        for key, hits in (("a", 2), ("b", 1), ("d", 1)):
            for _ in range(hits):
                policy.touch(key)
        assert [policy.frequency(k) for k in "abcd"] == [3, 2, 1, 2]
        assert [policy.evict()[0] for _ in range(4)] == ["c", "b", "d", "a"]

    def test_lfu_removing_the_lowest_bucket_moves_the_minimum_up(self) -> None:
        policy = LFU[str](4)
        fill(policy, "ab")
        policy.touch("b")
        policy.remove("a")
        assert policy.victim() == ("b", "lfu")


class TestSIEVE(PolicyContract):
    policy_class = SIEVE

    def test_sieve_nsdi24_hand_skips_visited_and_clears_them(self) -> None:
        policy = self.make(4)
        fill(policy, "abcd")
        policy.touch("a")
        policy.touch("b")
        assert policy.evict() == ("c", "sieve")  # a, b visited: cleared, skipped
        fill(policy, "e")
        assert policy.evict()[0] == "d"  # the hand goes on from where it stopped, towards newer keys
        assert policy.evict()[0] == "e"
        assert policy.evict()[0] == "a"  # wrapped to the oldest; its bit was cleared on the first sweep

    def test_sieve_removing_the_key_under_the_hand_moves_the_hand_on(self) -> None:
        policy = self.make(4)
        fill(policy, "abcd")
        policy.touch("a")
        key, _ = policy.victim()
        assert key == "b"
        policy.remove("b")
        assert policy.victim()[0] == "c"


class TestS3FIFO(PolicyContract):
    policy_class = S3FIFO

    def test_s3fifo_sosp23_one_hit_keys_leave_from_small_into_the_ghost(self) -> None:
        policy = S3FIFO[str](10)
        fill(policy, [f"k{i}" for i in range(11)])
        assert "k0" not in policy and policy.remembers("k0")
        assert policy.queue_of("k10") == "small"

    def test_s3fifo_sosp23_a_ghost_hit_goes_straight_to_main(self) -> None:
        policy = S3FIFO[str](10)
        fill(policy, [f"k{i}" for i in range(11)])
        fill(policy, ["k0"])
        assert (policy.queue_of("k0"), policy.ghost_hits, policy.remembers("k0")) == ("main", 1, False)

    def test_s3fifo_sosp23_a_key_hit_in_small_is_promoted_not_evicted(self) -> None:
        policy = S3FIFO[str](10)
        fill(policy, [f"k{i}" for i in range(10)])
        policy.touch("k0")
        assert policy.evict() == ("k1", "small")
        assert policy.queue_of("k0") == "main"

    def test_s3fifo_sosp23_frequency_is_capped_at_3(self) -> None:
        """k0 hit ten times and k1 three times buy the same three reinsertions in main: k0, older, goes first."""
        policy = S3FIFO[str](10)
        keys = [f"k{i}" for i in range(12)]
        fill(policy, keys)  # k0 and k1 leave small for the ghost
        fill(policy, ["k0", "k1"])  # ghost hits: both in main, k0 first
        for key in keys[2:]:
            if key in policy and policy.queue_of(key) == "small":
                policy.remove(key)
        for _ in range(10):
            policy.touch("k0")
        for _ in range(3):
            policy.touch("k1")
        assert policy.victim() == ("k0", "main")

    def test_s3fifo_ghost_is_bounded_by_the_main_share_in_bytes(self) -> None:
        policy = S3FIFO[str](100)
        fill(policy, [f"k{i}" for i in range(1000)])
        assert policy.ghost_used <= policy.ghost_budget == 90

    def test_s3fifo_sizes_count_in_every_queue(self) -> None:
        policy = S3FIFO[str](100)
        fill(policy, ["big"], size=60)
        fill(policy, [f"k{i}" for i in range(5)], size=10)
        assert policy.used <= 100 and policy.small_used <= policy.used


@pytest.mark.parametrize("name", POLICIES)
def test_make_policy_builds_each_named_policy(name: str) -> None:
    assert make_policy(name, 10).name == name


def test_make_policy_refuses_an_unknown_name_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match="did you mean sieve"):
        make_policy("seive", 10)


def test_setting_eviction_defaults_to_s3fifo_and_reaches_the_memory_store() -> None:
    from proxy.clock import FakeClock
    from proxy.config import Settings
    from proxy.runtime import open_stores
    from proxy.storage.memory import MemoryStorage

    assert Settings(upstream="http://127.0.0.1:9").eviction == "s3fifo"
    stores, _ = open_stores(Settings(upstream="http://127.0.0.1:9", eviction="sieve"), FakeClock())
    memory = stores["memory"]
    assert isinstance(memory, MemoryStorage) and memory.eviction == "sieve"


def test_setting_eviction_refuses_unknown_policies() -> None:
    from proxy.config import Settings
    from proxy.errors import ConfigError

    with pytest.raises(ConfigError, match="--eviction: unknown eviction policy 'lruu'"):
        Settings(upstream="http://127.0.0.1:9", eviction="lruu")


def test_eviction_flag_and_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.cli import build_parser, settings_from_args
    from proxy.config import Settings

    args = build_parser().parse_args(["serve", "--upstream", "http://127.0.0.1:9", "--eviction", "lfu"])
    assert settings_from_args(args).eviction == "lfu"
    monkeypatch.setenv("CACHEPROXY_EVICTION", "fifo")
    args = build_parser().parse_args(["serve", "--upstream", "http://127.0.0.1:9"])
    assert settings_from_args(args).eviction == "fifo"
    env = Settings(upstream="http://127.0.0.1:9", eviction="lru").to_env()
    assert Settings.from_env(env).eviction == "lru"  # workers get it through the environment


async def test_two_tier_l1_takes_the_eviction_setting() -> None:
    """The L1 in front of Redis evicts by the same setting (built without connecting)."""
    from proxy.clock import FakeClock
    from proxy.storage.factory import open_store
    from proxy.storage.tiered import TieredStorage

    store = open_store(
        "redis://127.0.0.1:1/0", memory_budget=1 << 20, l1_budget=1 << 20, clock=FakeClock(), eviction="sieve"
    )
    try:
        assert isinstance(store, TieredStorage)
        assert store.l1.eviction == "sieve" and store.eviction_stats().policy == "sieve"
    finally:
        await store.close()
