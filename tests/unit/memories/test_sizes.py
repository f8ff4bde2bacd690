"""Which agents recall treats as large without counting them (memories/sizes.py)."""

from __future__ import annotations

from memanto_server.memories.repository import POPULATION_UP_TO
from memanto_server.memories.sizes import LargeAgents


class Clock:
    """The time LargeAgents reads, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_agent_seen_with_enough_memories_is_known_large() -> None:
    sizes = LargeAgents()
    sizes.saw("owner", "small", POPULATION_UP_TO - 1)
    sizes.saw("owner", "large", POPULATION_UP_TO)
    assert not sizes.known("owner", "small")
    assert sizes.known("owner", "large")
    assert not sizes.known("other-owner", "large")  # agents are per owner


def test_a_verdict_expires_however_often_the_agent_is_seen_meanwhile() -> None:
    clock = Clock()
    sizes = LargeAgents(ttl=60.0, clock=clock)
    sizes.saw("owner", "large", POPULATION_UP_TO)
    for _ in range(5):  # recalls that took the verdict and so did not count the agent
        clock.now += 11.0
        assert sizes.known("owner", "large")
        sizes.saw("owner", "large", POPULATION_UP_TO)
    clock.now += 11.0  # 66 s after the verdict
    assert not sizes.known("owner", "large")  # counted again by the next recall
    sizes.saw("owner", "large", POPULATION_UP_TO)  # ... which found it large still
    clock.now += 59.0
    assert sizes.known("owner", "large")


def test_the_oldest_verdicts_are_forgotten_first() -> None:
    sizes = LargeAgents(capacity=2)
    for agent in ("a", "b", "c"):
        sizes.saw("owner", agent, POPULATION_UP_TO)
    assert [sizes.known("owner", agent) for agent in ("a", "b", "c")] == [False, True, True]
