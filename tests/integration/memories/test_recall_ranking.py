"""Recall ranks every signal at once (issue 13): text in every script, IDF weighting, the typo
fallback beside exact words, knowledge updates, ties, modes, and answers from the same search.

Everything runs against the real app with real Postgres and Redis.
"""

# ruff: noqa: RUF001 - memories and questions in other scripts use their own punctuation
from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.owners import OwnerKey, start
from tests.integration.memories.test_memory_features import answer, batch, ids_of, recall, remember


async def test_an_all_words_match_on_a_stale_memory_does_not_hide_the_newer_one(client: Any, owner: OwnerKey) -> None:
    # The old code searched all words first and stopped there: the newer memory, which
    # holds only some of the words, was never shown.
    live = await start(client, owner)
    await batch(client, live, [{"content": f"Globex account note {i}: quarterly call went well."} for i in range(8)])
    stale = await remember(client, live, "Acme Foods deal moved to the pilot stage at the Des Moines plant.")
    newer = await remember(client, live, "Acme Foods signed the rollout contract for all plants.")
    found = await recall(client, live, body={"query": "Where does the Acme Foods deal stand?"})
    assert set(ids_of(found)[:2]) == {newer, stale}


async def test_of_two_conflicting_memories_the_later_ranks_first(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await batch(client, live, [{"content": f"Support ticket {i} closed after a call."} for i in range(6)])
    old = await remember(client, live, "The sales director for the Midwest region is Dave Romero.")
    new = await remember(client, live, "The sales director for the Midwest region is now Hannah Kowalski.")
    found = await recall(client, live, body={"query": "Who is the sales director for the Midwest?"})
    assert ids_of(found)[:2] == [new, old]
    # Stored in one batch, the later item is the later fact.
    first, second = await batch(
        client,
        live,
        [{"content": "The office wifi password is maple-17."}, {"content": "The office wifi password is birch-42."}],
    )
    assert ids_of(await recall(client, live, body={"query": "office wifi password"}))[:2] == [second, first]


async def test_a_rare_word_outranks_a_common_one(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    common = [{"content": f"The customer called about ticket {i} and the customer was happy."} for i in range(8)]
    await batch(client, live, common)
    rare = await remember(client, live, "Refund approved for the duplicate charge.")
    found = await recall(client, live, body={"query": "customer refund"})
    assert ids_of(found)[0] == rare
    assert found["memories"][0]["score"] > found["memories"][1]["score"]


async def test_the_typo_fallback_runs_even_when_another_word_matches(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    webhook = await remember(client, live, "The webhook endpoint expects HMAC-SHA256 signatures.")
    await batch(client, live, [{"content": f"Algorithm notes, part {i}."} for i in range(3)])
    found = await recall(client, live, body={"query": "webhok signature algorithm"})
    assert ids_of(found)[0] == webhook
    assert found["memories"][0]["signals"] == ["text", "typo"]


async def test_rows_of_one_batch_keep_their_order_among_equal_matches(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    ids = await batch(client, live, [{"content": f"gazebo note number {i}"} for i in range(6)])
    for _ in range(3):  # the same order every time: newest (last in the batch) first
        assert ids_of(await recall(client, live, body={"query": "gazebo"})) == ids[::-1]


@pytest.mark.parametrize(
    ("memory", "query", "other"),
    [
        ("客户王先生喜欢用微信联系，不喜欢打电话。", "王先生喜欢怎么联系？", "上海办公室位于浦东新区世纪大道100号。"),
        (
            "田中さんはそばアレルギーがあるので、会食ではそばを避けること。",
            "田中さんは何のアレルギーがありますか？",
            "大阪支社の報告書の締め切りは毎月25日です。",
        ),
        (
            "김민수 과장은 이메일보다 카카오톡 메시지를 선호합니다.",
            "김민수 과장에게 어떻게 연락하나요?",
            "서울 사무실의 프린터 유지보수는 한빛테크가 담당합니다.",
        ),
        ("ลูกค้าชาวไทยชอบอาหารทะเลแต่ไม่ทานเผ็ด", "ลูกค้าชาวไทยชอบทานอะไร", "คุณสมชายเป็นคนขับรถของบริษัท ติดต่อได้ทางไลน์"),
        (
            "العميل في دبي يفضل الاجتماعات صباح يوم الأحد.",
            "متى يفضل العميل في دبي الاجتماعات؟",
            "يتم دفع الفواتير خلال ستين يوما.",
        ),
        (
            "शर्मा जी को सुबह दस बजे से पहले फोन नहीं करना चाहिए।",
            "शर्मा जी को कब फोन करना चाहिए?",
            "दिल्ली कार्यालय का पता कनॉट प्लेस है।",
        ),
        (
            "Клиент Иван Петров живёт в Москве и предпочитает звонки вечером.",
            "Где живёт Иван Петров?",
            "Договор продлевается в декабре.",
        ),
    ],
    ids=["chinese", "japanese", "korean", "thai", "arabic", "hindi", "russian"],
)
async def test_a_query_in_any_script_finds_memories_of_that_script(
    client: Any, owner: OwnerKey, memory: str, query: str, other: str
) -> None:
    live = await start(client, owner)
    expected = await remember(client, live, memory)
    await remember(client, live, other)
    await remember(client, live, "An English memory about invoices and email.")
    found = await recall(client, live, body={"query": query})
    assert ids_of(found)[:1] == [expected]
    assert "text" in found["memories"][0]["signals"]


async def test_a_russian_word_in_another_case_is_found_through_its_close_spelling(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    moscow = await remember(client, live, "Склад находится в Москве.")
    found = await recall(client, live, body={"query": "Москва"})
    assert ids_of(found) == [moscow]
    assert found["memories"][0]["signals"] == ["typo"]


async def test_text_mode_is_words_only_and_is_the_mode_reported(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    stored = await remember(client, live, "Customer prefers email over phone calls.")
    found = await recall(client, live, body={"query": "email", "mode": "text"})
    assert found["mode"] == "text"
    assert ids_of(found) == [stored]
    in_query = await client.post(live.url("recall"), params={"query": "email", "mode": "text"}, headers=live.headers)
    assert in_query.status_code == 200, in_query.text
    assert in_query.json()["mode"] == "text"


async def test_an_unknown_mode_is_refused(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for request in ({"json": {"query": "x", "mode": "vibes"}}, {"params": {"query": "x", "mode": "vibes"}}):
        response = await client.post(live.url("recall"), headers=live.headers, **request)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_answer_uses_recalls_stemmer_a_memory_saying_named_answers_name(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await remember(client, live, "We adopted a cat. The cat is named Biscuit. She likes the sofa.")
    await remember(client, live, "The vet is Greenway Vets.")
    said = await answer(client, live, "What is the cat's name?")
    assert said["answer"] == "The cat is named Biscuit."
    assert said["confidence"] > 0.3


async def test_answer_keeps_abbreviations_inside_their_sentence(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await remember(client, live, "Dentist appointment with Dr. Okafor on 12 March. Bring the insurance card.")
    said = await answer(client, live, "Who is the dentist appointment with?")
    assert said["answer"].startswith("Dentist appointment with Dr. Okafor on 12 March.")


async def test_answer_says_so_plainly_with_no_confidence_when_nothing_answers(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await remember(client, live, "Billing date is the 15th of every month.")
    said = await answer(client, live, "What is the capital of Mongolia?")
    assert said["answer"] == "No stored memory answers this question."
    assert said["sources"] == []
    assert said["confidence"] == 0.0
