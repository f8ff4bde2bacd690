"""The quality bench reports the held-out questions apart from those its constants were tuned on."""

from __future__ import annotations

from bench.quality.metrics import Agent, Memory, Outcome, Question, summarise

AGENT = Agent(
    agent_id="a",
    domain="test",
    memories=[Memory(id="m", content="Sam drives a blue Kia.")],
    questions=[
        Question(q="What does Sam drive?", gold=["m"], answer=["Kia"]),
        Question(q="What is Sam's blood type?", gold=[]),
        Question(q="Which car is Sam's?", gold=["m"], answer=["Kia"], heldout=True),
        Question(q="What is Sam's passport number?", gold=[], heldout=True),
    ],
)
OUTCOMES = {
    ("a", 0): Outcome(ranked=["m"], answer="Sam drives a blue Kia.", abstained=False),
    ("a", 1): Outcome(ranked=["m"], answer="No stored memory answers this question.", abstained=True),
    ("a", 2): Outcome(ranked=[], answer="No stored memory answers this question.", abstained=True),
    ("a", 3): Outcome(ranked=["m"], answer="Sam drives a blue Kia.", abstained=False),
}


def test_held_out_questions_are_counted_apart() -> None:
    tuned = summarise([AGENT], OUTCOMES)
    assert (tuned["questions_all"], tuned["recall_at_5_all"], tuned["answer_abstains_wrongly"]) == (1, 1.0, 0.0)
    assert (tuned["questions_without_answer"], tuned["answer_abstains_without_answer"]) == (1, 1.0)
    held = summarise([AGENT], OUTCOMES, heldout=True)
    assert (held["questions_all"], held["recall_at_5_all"], held["answer_abstains_wrongly"]) == (1, 0.0, 1.0)
    assert (held["questions_without_answer"], held["answer_abstains_without_answer"]) == (1, 0.0)
