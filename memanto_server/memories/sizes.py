"""Which agents are known to be large: recall counts an agent's memories (up to
POPULATION_UP_TO) in its text search and in its nearest-neighbour search, and for an agent of a
million memories each count reads 10,000 index entries (about 1.8 ms, bench/recall_scale.py) on
every recall. An agent seen to have that many is remembered for a while and not counted again:
both searches treat it as large (text by window, meaning by the graph).

Only "large" is remembered, never "small": an agent that grows past the threshold is counted
until it is seen large, so a small agent is always searched exactly. A verdict stands `ttl`
seconds from when it was made, however often the agent is recalled meanwhile (a search that
did not count says nothing new), and then the agent is counted again. So one that shrinks below
the threshold (memories deleted) is treated as large for at most `ttl` seconds: its text
candidates are the same either way (migration 0016), and its nearest neighbours come from the
graph rather than from every distance.

A dict kept in insertion order with a deadline per agent is all this needs; a cache library
would add a dependency for these few lines.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from memanto_server.memories.repository import POPULATION_UP_TO

LARGE_FOR_SECONDS = 60.0
AGENTS_KEPT = 10_000


class LargeAgents:
    def __init__(
        self,
        ttl: float = LARGE_FOR_SECONDS,
        capacity: int = AGENTS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._until: OrderedDict[tuple[str, str], float] = OrderedDict()

    def known(self, owner_id: str, agent_id: str) -> bool:
        """Whether the agent was seen with POPULATION_UP_TO memories or more within `ttl`."""
        key = (owner_id, agent_id)
        until = self._until.get(key)
        if until is None:
            return False
        if until < self._clock():
            del self._until[key]
            return False
        return True

    def saw(self, owner_id: str, agent_id: str, population: int) -> None:
        """The agent's memories, as a search counted them (up to POPULATION_UP_TO); a verdict
        that stands is neither renewed nor changed."""
        if population < POPULATION_UP_TO or self.known(owner_id, agent_id):
            return
        key = (owner_id, agent_id)
        self._until[key] = self._clock() + self._ttl
        if len(self._until) > self._capacity:
            self._until.popitem(last=False)
