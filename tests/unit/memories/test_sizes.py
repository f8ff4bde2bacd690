"""Which agents recall treats as large without counting them (memories/sizes.py)."""

from __future__ import annotations

from memanto_server.memories.repository import POPULATION_UP_TO
from memanto_server.memories.sizes import LargeAgents


def test_an_agent_seen_with_enough_memories_is_known_large() -> None:
    sizes = LargeAgents()
    sizes.saw("owner", "small", POPULATION_UP_TO - 1)
    sizes.saw("owner", "large", POPULATION_UP_TO)
    assert not sizes.known("owner", "small")
    assert sizes.known("owner", "large")
    assert not sizes.known("other-owner", "large")  # agents are per owner


def test_the_verdict_expires() -> None:
    sizes = LargeAgents(ttl=-1.0)  # already past its deadline when made
    sizes.saw("owner", "large", POPULATION_UP_TO)
    assert not sizes.known("owner", "large")
    sizes = LargeAgents(ttl=3600.0)
    sizes.saw("owner", "large", POPULATION_UP_TO)
    assert sizes.known("owner", "large")


def test_the_least_recently_seen_agents_are_forgotten_first() -> None:
    sizes = LargeAgents(capacity=2)
    for agent in ("a", "b"):
        sizes.saw("owner", agent, POPULATION_UP_TO)
    sizes.saw("owner", "a", POPULATION_UP_TO)  # seen again: now the most recent
    sizes.saw("owner", "c", POPULATION_UP_TO)
    assert [sizes.known("owner", agent) for agent in ("a", "b", "c")] == [True, False, True]
