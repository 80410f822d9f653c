"""Feedback, review and training pairs over a real audit log (records written as the
assistant writes them), and the audience rule in build-data over a real Qdrant Edge index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.audit import AuditLog
from appliance.audit.feedback import MAX_TEXT_CHARS, Feedback, FeedbackError, plain_answer
from appliance.audit.pairs import (
    PairDocument,
    Writer,
    audience_refusal,
    current_groups,
    export_pairs,
)
from appliance.domain import DocumentEntry, IndexedChunk
from appliance.finetune import FinetuneError
from appliance.finetune.data import QAPair, build_examples, load_pairs
from appliance.manifest import Manifest
from appliance.retrieval import Retriever
from appliance.store.edge import EdgeStore
from tests.support.fakes import BagOfWordsEmbedder, ScriptedGenerator
from tests.support.feedback import ANN, CAROL, DAVE, HUGO, PAY, WIFI, answer

ACL = {(doc_id, source): acl for doc_id, source, acl in (WIFI, PAY)}


class Book:
    def __init__(self, root: Path) -> None:
        self.audit = AuditLog(root / "audit.sqlite3")
        self.denied: list[tuple[str, str, str, str]] = []
        self.acl = dict(ACL)
        self.feedback = Feedback(
            self.audit,
            lambda doc_id, source: self.acl.get((doc_id, source)),
            lambda who, action, target, why: self.denied.append((who.name, action, target, why)),
        )
        self.wifi = answer(
            self.audit, ANN, "What is the wifi password?", "It is BLUEFALCON [1].", WIFI
        )
        self.pay = answer(self.audit, HUGO, "What is the pay band?", "Band 7 [1].", PAY, WIFI)


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Book]:
    opened = Book(tmp_path)
    yield opened
    opened.audit.close()


def test_a_user_rates_their_own_answer_and_never_another_users(book: Book) -> None:
    item = book.feedback.rate(ANN, book.wifi, "up", None, "ui")
    assert (item.status, item.rating, item.record_id) == ("open", "up", book.wifi)
    assert item.answer == "It is BLUEFALCON [1]." and item.question == "What is the wifi password?"

    with pytest.raises(FeedbackError) as refused:
        book.feedback.rate(ANN, book.pay, "down", "Band 9")
    assert refused.value.status == 404 and "no answer of yours" in str(refused.value)
    assert book.denied == [("ann", "rate an answer", book.pay, "the answer is another user's")]
    assert [i.user for i in book.feedback.items()] == ["ann"]  # nothing written for hugo's

    with pytest.raises(FeedbackError) as unknown:
        book.feedback.rate(ANN, "no-such-id", "up")
    assert unknown.value.status == 404
    with pytest.raises(FeedbackError) as not_an_answer:
        book.feedback.rate(ANN, item.id, "up")  # her feedback record is hers, but no answer
    assert not_an_answer.value.status == 400 and "not an answer" in str(not_an_answer.value)
    with pytest.raises(FeedbackError, match="use 'up' or 'down'"):
        book.feedback.rate(ANN, book.wifi, "meh")


def test_an_auditor_approves_feedback_into_a_pair_with_the_groups_behind_it(book: Book) -> None:
    rated = book.feedback.rate(HUGO, book.pay, "down", "The band is 9 [2].")
    with pytest.raises(FeedbackError) as plain_user:
        book.feedback.review(ANN, rated.id, True)
    assert plain_user.value.status == 403
    assert book.denied[-1][:2] == ("ann", "approve feedback")

    approved = book.feedback.review(CAROL, rated.id, True, note="checked with hr")
    assert (approved.status, approved.reviewer, approved.note) == (
        "approved",
        "carol",
        "checked with hr",
    )
    [pair] = book.feedback.pairs()
    assert (pair.id, pair.question, pair.answer) == (
        book.pay,
        "What is the pay band?",
        "The band is 9.",
    )
    assert pair.documents == (PairDocument(*PAY), PairDocument(*WIFI))
    assert pair.sources == ()  # a correction: any passage holding it may be cited
    assert pair.feedback_id == rated.id and pair.reviewer == "carol"


def test_a_good_answer_becomes_a_pair_citing_its_own_sources(book: Book) -> None:
    rated = book.feedback.rate(ANN, book.wifi, "up")
    book.feedback.review(DAVE, rated.id, True)
    [pair] = book.feedback.pairs()
    assert pair.answer == "It is BLUEFALCON." and pair.sources == ("/docs/wifi.txt",)


def test_review_rules_own_feedback_replaced_feedback_missing_answer_unknown_groups(
    book: Book,
) -> None:
    own = book.feedback.rate(CAROL, answer(book.audit, CAROL, "q?", "a [1].", WIFI), "up")
    with pytest.raises(FeedbackError, match="your own feedback"):
        book.feedback.review(CAROL, own.id, True)

    first = book.feedback.rate(ANN, book.wifi, "down")
    second = book.feedback.rate(ANN, book.wifi, "down", "BLUEFALCON")
    assert {i.id: i.status for i in book.feedback.items()}[first.id] == "replaced"
    with pytest.raises(FeedbackError) as replaced:
        book.feedback.review(CAROL, first.id, True)
    assert replaced.value.status == 409
    assert [i.id for i in book.feedback.items(status="open")] == [second.id, own.id]

    down = book.feedback.rate(HUGO, book.pay, "down")  # no correction: nothing to train on
    with pytest.raises(FeedbackError, match="write the answer"):
        book.feedback.review(CAROL, down.id, True)
    del book.acl[(PAY[0], PAY[1])]  # the hr document changed since the answer
    with pytest.raises(FeedbackError) as unknown:
        book.feedback.review(CAROL, down.id, True, answer="Band 9")
    assert unknown.value.status == 409 and "/docs/hr/pay.txt" in str(unknown.value)
    assert book.feedback.review(CAROL, down.id, False, note="unclear").status == "rejected"
    assert book.feedback.pairs() == []


def test_the_latest_review_of_an_answer_decides_its_pair(book: Book) -> None:
    rated = book.feedback.rate(ANN, book.wifi, "up")
    book.feedback.review(CAROL, rated.id, True)
    assert len(book.feedback.pairs()) == 1
    book.feedback.review(DAVE, rated.id, False, note="the password changed")
    assert book.feedback.pairs() == []


def test_export_for_an_audience_leaves_out_the_hr_pair_and_names_why(
    book: Book, tmp_path: Path
) -> None:
    book.feedback.review(CAROL, book.feedback.rate(ANN, book.wifi, "up").id, True)
    pay = book.feedback.rate(HUGO, book.pay, "down", "Band 9")
    book.feedback.review(CAROL, pay.id, True)
    out = tmp_path / "pairs.jsonl"

    report = export_pairs(book.feedback.pairs(), out, ("everyone",))
    assert [p.id for p in report.written] == [book.wifi]
    [(left, why)] = report.left_out
    assert left.id == book.pay
    assert why == (
        f"pair {book.pay} left out: its answer came from /docs/hr/pay.txt, readable only by hr, "
        "and the adapter's audience (everyone) holds none of these groups"
    )
    [line] = out.read_text(encoding="utf-8").splitlines()
    data = json.loads(line)
    assert data["audit_id"] == book.wifi and data["documents"][0]["acl"] == ["everyone"]
    [loaded] = load_pairs(out)  # the format build-data reads
    assert loaded.documents == (PairDocument(*WIFI),) and loaded.answer == "It is BLUEFALCON."

    both = export_pairs(book.feedback.pairs(), out)  # no audience: every approved pair
    assert len(both.written) == 2 and both.left_out == ()
    assert audience_refusal("x", both.written[1].documents, ("everyone", "hr")) is None


def test_every_step_is_a_record_of_the_verified_chain(book: Book) -> None:
    rated = book.feedback.rate(ANN, book.wifi, "down", "BLUEFALCON")
    book.feedback.review(CAROL, rated.id, True)
    about = book.feedback.about(book.wifi)
    assert [r.entry.outcome for r in about] == ["feedback", "review"]
    assert about[0].entry.retrieval["correction"] == "BLUEFALCON"
    assert about[1].entry.retrieval["documents"] == [
        {"doc_id": WIFI[0], "source": WIFI[1], "acl": ["everyone"]}
    ]
    result = book.audit.verify()
    assert result.ok and result.count == 4, result.message


def test_overlong_corrections_notes_and_ids_are_refused_with_a_short_message(
    book: Book,
) -> None:
    with pytest.raises(FeedbackError, match="correction is too long: at most 4000") as long:
        book.feedback.rate(ANN, book.wifi, "down", "x" * (MAX_TEXT_CHARS + 1))
    assert long.value.status == 400
    with pytest.raises(FeedbackError) as huge_id:
        book.feedback.rate(ANN, "z" * 100_000, "up")
    assert huge_id.value.status == 404 and len(str(huge_id.value)) < 200
    rated = book.feedback.rate(ANN, book.wifi, "down", "x" * MAX_TEXT_CHARS)  # the limit fits
    with pytest.raises(FeedbackError, match="note is too long"):
        book.feedback.review(CAROL, rated.id, False, note="n" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(FeedbackError) as huge_feedback:
        book.feedback.review(CAROL, "f" * 100_000, False)
    assert huge_feedback.value.status == 404 and len(str(huge_feedback.value)) < 200
    assert [i.status for i in book.feedback.items()] == ["open"]  # nothing else written


def test_exported_pairs_are_readable_by_their_owner_only(book: Book, tmp_path: Path) -> None:
    pay = book.feedback.rate(HUGO, book.pay, "down", "Band 9")
    book.feedback.review(CAROL, pay.id, True)
    out = tmp_path / "pairs.jsonl"
    out.write_text("old\n", encoding="utf-8")
    out.chmod(0o644)
    export_pairs(book.feedback.pairs(), out)  # no audience: the hr pair is in it
    assert "Band 9" in out.read_text(encoding="utf-8")
    assert out.stat().st_mode & 0o777 == 0o600


def test_citation_marks_are_taken_out_of_a_training_answer() -> None:
    assert plain_answer("It is BLUEFALCON [1][2]. Ask IT [3].") == "It is BLUEFALCON. Ask IT."


# build-data with an audience, over a real index

DOCS = [
    ("/docs/wifi.txt", ("everyone",), "The guest wifi password is BLUEFALCON this month."),
    ("/docs/hr/pay.txt", ("hr",), "The engineering pay band is band 9 this year."),
]


@pytest.fixture
def retriever(tmp_path: Path) -> Iterator[Retriever]:
    """A real Qdrant Edge index of DOCS."""
    embedder = BagOfWordsEmbedder()
    store = EdgeStore.open(tmp_path / "qdrant", "docs", embedder.dimension, "bow")
    try:
        chunks = [
            IndexedChunk(f"{n:064x}", source, 0, text, acl, "2026-11-23T00:00:00Z")
            for n, (source, acl, text) in enumerate(DOCS, start=1)
        ]
        store.upsert(chunks, embedder.embed([c.text for c in chunks]))
        yield Retriever(embedder, store)
    finally:
        store.close()


PAIRS = [
    QAPair(
        "w",
        "What is the guest wifi password?",
        "BLUEFALCON",
        (),
        (PairDocument("1" * 64, "/docs/wifi.txt", ("everyone",)),),
    ),
    QAPair(
        "p",
        "What is the engineering pay band?",
        "band 9",
        (),
        (PairDocument("2" * 64, "/docs/hr/pay.txt", ("hr",)),),
    ),
]


def build(retriever: Retriever, audience: tuple[str, ...], **options):  # type: ignore[no-untyped-def]
    return build_examples(
        options.pop("pairs", PAIRS),
        lambda q: retriever.search(q, audience, 2),
        ScriptedGenerator(),
        score_threshold=0.05,
        max_tokens=64,
        audience=audience,
        **options,
    )


def test_build_data_leaves_out_a_pair_from_an_hr_document_for_everyone(
    retriever: Retriever,
) -> None:
    public = build(retriever, ("everyone",))
    assert [e.id for e in public.examples] == ["w"]
    assert [(p.id, "readable only by hr" in why) for p, why in public.restricted] == [("p", True)]
    assert "band 9" not in json.dumps([e.to_json() for e in public.examples])
    assert public.to_json()["restricted"][0]["reason"].startswith("pair p left out")

    for_hr = build(retriever, ("everyone", "hr"))  # served only to users holding both groups
    assert sorted(e.id for e in for_hr.examples) == ["p", "w"] and not for_hr.restricted


def test_build_data_checks_the_groups_the_index_gives_each_document_now(
    retriever: Retriever, tmp_path: Path
) -> None:
    """Re-ingested with a narrower --acl, a document keeps its doc_id: the pair approved when
    everyone could read it must not reach data built for everyone."""
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    try:
        manifest.put(DocumentEntry("/docs/wifi.txt", "1" * 64, 10, 1, ("hr",), "2026-11-24"))
        report = build(retriever, ("everyone",), current=current_groups(manifest))
        assert report.examples == []
        reasons = dict((p.id, why) for p, why in report.restricted)
        assert reasons["w"] == (
            "pair w left out: its answer came from /docs/wifi.txt, readable only by hr now, "
            "and the adapter's audience (everyone) holds none of these groups"
        )
        wider = build(retriever, ("everyone", "hr"), current=current_groups(manifest))
        assert [e.id for e in wider.examples] == ["w"]  # pay.txt left the index
        [(left, why)] = wider.restricted
        assert left.id == "p" and "/docs/hr/pay.txt" in why and "no longer in the index" in why
    finally:
        manifest.close()


def test_a_correction_by_a_user_with_other_groups_trains_only_an_audience_holding_them(
    book: Book, tmp_path: Path
) -> None:
    """hugo (everyone, hr) corrects an answer from a public document: what he wrote may be
    what hr reads, so it trains no adapter for everyone; his answer rated up unchanged may."""
    question = "What is the guest wifi password?"
    corrected = answer(book.audit, HUGO, question, "It is REDEAGLE [1].", WIFI)
    liked = answer(book.audit, HUGO, "Wifi?", "It is BLUEFALCON [1].", WIFI)
    for record, correction in ((corrected, "BLUEFALCON, and band 9 pay"), (liked, None)):
        rated = book.feedback.rate(HUGO, record, "down" if correction else "up", correction)
        book.feedback.review(CAROL, rated.id, True)
    pairs = {pair.id: pair for pair in book.feedback.pairs()}
    assert pairs[corrected].written_by == Writer("hugo", ("everyone", "hr"))
    assert pairs[liked].written_by is None

    out = tmp_path / "pairs.jsonl"
    report = export_pairs(list(pairs.values()), out, ("everyone",))
    assert [p.id for p in report.written] == [liked]
    assert report.left_out[0][1] == (
        f"pair {corrected} left out: its answer was written by hugo, who holds hr beyond the "
        "adapter's audience (everyone), and may repeat what those groups read"
    )
    assert export_pairs(list(pairs.values()), out, ("everyone", "hr")).left_out == ()

    export_pairs(list(pairs.values()), out)  # all: build-data checks the writer again
    loaded = load_pairs(out)
    built = build_examples(
        loaded,
        lambda q: [],
        ScriptedGenerator(),
        score_threshold=0.05,
        max_tokens=64,
        audience=("everyone",),
    )
    assert [(p.id, "written by hugo" in why) for p, why in built.restricted] == [(corrected, True)]


def test_a_pair_exported_without_its_writer_is_refused_with_what_to_do(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    document = {"doc_id": "1" * 64, "source": "/docs/wifi.txt", "acl": ["everyone"]}
    line = {"question": "Wifi?", "answer": "BLUEFALCON", "documents": [document]}
    old.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"old.jsonl:1: .*'written_by'.*export the pairs again"):
        load_pairs(old)
