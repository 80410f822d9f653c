import pytest

from appliance.verification import (
    CitedText,
    SentenceRelease,
    any_supported,
    is_refusal,
    key_terms,
    split_sentences,
    uncovered_subject,
    verify_answer,
)

COUNTER = CitedText(
    1,
    "chunk-1",
    "A Counter is a dict subclass for counting hashable objects. Elements are stored as "
    "dictionary keys and their counts are stored as dictionary values.",
)
MOST_COMMON = CitedText(
    2,
    "chunk-2",
    "most_common([n]) Return a list of the n most common elements and their counts from the "
    "most common to the least. The default limit is 100 entries.",
)
PASSAGES = [COUNTER, MOST_COMMON]


def test_a_sentence_copied_from_the_passage_it_cites_is_supported_with_its_offsets() -> None:
    answer = "A Counter is a dict subclass for counting hashable objects [1]."
    (check,) = verify_answer(answer, PASSAGES)
    assert check.supported is True and check.citations == (1,) and not check.attributed
    assert check.quote is not None and check.quote.chunk_id == "chunk-1"
    assert COUNTER.text[check.quote.start : check.quote.end] == check.quote.text
    assert check.quote.text == "A Counter is a dict subclass for counting hashable objects"
    assert check.verbatim_words == 10


def test_a_paraphrase_sharing_most_content_words_is_supported_by_overlap() -> None:
    (check,) = verify_answer("Counts are stored as the dictionary values [1].", PASSAGES)
    assert check.supported is True and check.verbatim_words < 5
    assert check.quote is not None
    assert check.quote.text.startswith("Elements are stored as dictionary keys")


def test_an_invented_number_is_not_supported_even_when_the_words_match() -> None:
    (check,) = verify_answer("The default limit is 1000 entries [2].", PASSAGES)
    assert check.supported is False
    (check,) = verify_answer("The default limit is 100 entries [2].", PASSAGES)
    assert check.supported is True


def test_a_number_the_question_gives_need_not_be_in_the_passage() -> None:
    answer = "Call most_common(10) to list the most common elements and their counts [2]."
    (strict,) = verify_answer(answer, PASSAGES)
    (given,) = verify_answer(answer, PASSAGES, question="How do I get the 10 most common words?")
    assert strict.supported is False and given.supported is True


def test_a_sentence_whose_words_are_not_in_the_cited_passage_is_unsupported() -> None:
    (check,) = verify_answer("Use pandas.read_excel to load the sheet [1].", PASSAGES)
    assert check.supported is False and check.citations == (1,)
    assert not any_supported([check])


def test_an_uncited_or_miscited_sentence_gets_the_passage_that_supports_it() -> None:
    uncited, miscited = verify_answer(
        "It returns a list of the n most common elements. "
        "A Counter is a dict subclass for counting hashable objects [2].",
        PASSAGES,
    )
    assert uncited.supported and uncited.attributed and uncited.citations == (2,)
    assert uncited.text == "It returns a list of the n most common elements [2]."
    assert miscited.supported and miscited.attributed and miscited.citations == (1,)
    assert miscited.text.endswith("hashable objects [1].")


def test_sentences_keep_citations_written_after_the_full_stop() -> None:
    assert split_sentences("One thing. [1] Another [2].\nThird. [3]") == [
        "One thing. [1]",
        "Another [2].",
        "Third. [3]",
    ]


def test_a_sentence_without_content_words_states_nothing_to_check() -> None:
    checks = verify_answer("Yes. A Counter is a dict subclass [1].", PASSAGES)
    assert [c.supported for c in checks] == [None, True]


@pytest.mark.parametrize(
    "text",
    [
        "The documents do not say.",
        "The passages don't mention the default port.",
        "This is not mentioned in the context.",
        "I don't know.",
    ],
)
def test_refusals_are_recognised_and_never_supported(text: str) -> None:
    assert is_refusal(text)
    (check,) = verify_answer(text, [CitedText(1, "c", f"{text} Other words.")])
    assert check.supported is False


def test_answers_are_not_mistaken_for_refusals() -> None:
    assert not is_refusal("Use most_common() [2].")
    assert not is_refusal("The documents must be signed by the owner [1].")


def test_streamed_sentences_are_released_only_once_one_is_supported() -> None:
    release = SentenceRelease(PASSAGES)
    assert release.feed("Pandas has read_excel [1]. A Counter is a dict") == []
    released = release.feed("Pandas has read_excel [1]. A Counter is a dict subclass [1]. It")
    assert [c.text for c in released] == [
        "Pandas has read_excel [1].",
        "A Counter is a dict subclass [1].",
    ]
    assert [c.supported for c in released] == [False, True]
    checks, rest = release.finish(
        "Pandas has read_excel [1]. A Counter is a dict subclass [1]. It counts hashable objects."
    )
    assert len(checks) == 3 and [c.text for c in rest] == ["It counts hashable objects [1]."]


def test_a_citation_arriving_after_the_full_stop_is_waited_for() -> None:
    release = SentenceRelease(PASSAGES)
    assert release.feed("A Counter is a dict subclass for counting hashable objects. [") == []
    released = release.feed("A Counter is a dict subclass for counting hashable objects. [1] The")
    assert [c.citations for c in released] == [(1,)] and not released[0].attributed


def test_an_answer_with_no_supported_sentence_releases_nothing() -> None:
    release = SentenceRelease(PASSAGES)
    assert release.feed("Pandas has read_excel [1]. Flask returns 404 [2]. Done") == []
    checks, rest = release.finish("Pandas has read_excel [1]. Flask returns 404 [2].")
    assert rest == [] and not any_supported(checks)


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("What port does Django's manage.py runserver use?", ["Django", "manage.py"]),
        ("Why does itertools.groupby() repeat keys?", ["itertools.groupby()"]),
        ("Set max_workers on a ThreadPoolExecutor?", ["max_workers", "ThreadPoolExecutor"]),
        ("Which region does boto3 use for SQLAlchemy?", ["boto3", "SQLAlchemy"]),
        ("How many days of holiday, e.g. per year?", []),
    ],
)
def test_key_terms_are_the_names_a_question_turns_on(question: str, terms: list[str]) -> None:
    assert key_terms(question) == terms


def test_a_subject_no_passage_mentions_is_reported() -> None:
    texts = ["The built-in server listens on port 8000 by default."]
    assert uncovered_subject("What port does Django's manage.py use?", texts) == [
        "Django",
        "manage.py",
    ]
    # One name found is enough; a dotted name may be found by its last part.
    assert uncovered_subject("Does Django's http.server use port 8000?", [*texts, "server"]) == []
    assert uncovered_subject("How do collections.Counter objects count?", ["class Counter"]) == []
    assert uncovered_subject("Which port is the default?", texts) == []  # no name to check
