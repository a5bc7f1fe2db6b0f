import dataclasses
import logging
import re
from pathlib import Path

import pytest

from voxbus_llm.knowledge import (
    NO_MATCH,
    KnowledgeBase,
    Passage,
    split_passages,
    stem,
    tokenize,
)

RESTAURANT = Path(__file__).resolve().parents[2] / "agents" / "restaurant" / "knowledge"


@pytest.fixture(scope="module")
def restaurant() -> KnowledgeBase:
    return KnowledgeBase.from_folder(RESTAURANT)


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- restaurant example -------------------------------------------------------------------


def test_restaurant_folder_is_indexed(restaurant: KnowledgeBase) -> None:
    assert len(restaurant) > 10
    assert {p.source for p in restaurant.passages} == {
        "allergens.md", "bookings.md", "hours-and-location.md", "menu.md"}


def test_sunday_question_finds_opening_hours_first(restaurant: KnowledgeBase) -> None:
    hits = restaurant.search("when are you open on sunday")
    assert hits[0].title == "Opening hours"
    assert hits[0].source == "hours-and-location.md"
    assert "Sunday" in hits[0].text


def test_gluten_free_pasta_finds_the_menu(restaurant: KnowledgeBase) -> None:
    top = restaurant.search("do you have gluten free pasta")[0]
    assert top.source == "menu.md"
    assert "gluten" in top.title.lower()


@pytest.mark.parametrize("query", ["where can I park", "is there parking nearby",
                                   "do you have car parks"])
def test_stemming_matches_parking_and_park(restaurant: KnowledgeBase, query: str) -> None:
    assert restaurant.search(query)[0].title == "Parking"


@pytest.mark.parametrize(("query", "title"), [
    ("how do I cancel my booking", "Cancellation policy"),
    ("we are a group of twenty people", "Large groups"),
    ("anything vegetarian?", "Vegetarian and vegan dishes"),
    ("what's your address", "Address"),
    ("does the pesto contain nuts", "Nuts"),
])
def test_other_topics(restaurant: KnowledgeBase, query: str, title: str) -> None:
    assert restaurant.search(query)[0].title == title


def test_unknown_query_returns_no_match(restaurant: KnowledgeBase) -> None:
    assert restaurant.search("quantum chromodynamics") == []
    assert restaurant.answer_text("quantum chromodynamics") == NO_MATCH
    assert restaurant.answer_text("") == NO_MATCH
    assert restaurant.answer_text("what is it that you do") == NO_MATCH  # stop words only


def test_answer_text_is_titled_and_bounded(restaurant: KnowledgeBase) -> None:
    answer = restaurant.answer_text("when are you open on sunday")
    assert answer.startswith("[Opening hours] Trattoria Aurora is open")
    assert len(answer) <= 700
    short = restaurant.answer_text("when are you open on sunday", max_chars=60)
    assert len(short) <= 60
    assert short.endswith("...")
    assert answer.startswith(short[:-3])
    assert answer[len(short) - 3] == " "  # cut at a word boundary


def test_search_results_are_ranked_and_positive(restaurant: KnowledgeBase) -> None:
    hits = restaurant.search("gluten free pasta pizza", k=5)
    assert 1 < len(hits) <= 5
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert restaurant.search("pasta", k=0) == []
    assert restaurant.search("pasta") == restaurant.search("pasta")


# --- building from a folder ---------------------------------------------------------------


def test_headings_become_titles_and_small_paragraphs_merge(tmp_path: Path) -> None:
    write(tmp_path, "info.md", "# Opening hours\n\nWe open at nine.\n\nWe close at five.\n\n"
          "## Parking\n\nPark behind the shop.\n")
    kb = KnowledgeBase.from_folder(tmp_path)
    assert kb.passages == (
        Passage("info.md", "Opening hours", "We open at nine. We close at five."),
        Passage("info.md", "Parking", "Park behind the shop."),
    )


def test_long_sections_are_split_near_the_word_limit(tmp_path: Path) -> None:
    paragraph = " ".join(f"Sentence {i} is about the garden." for i in range(10))  # 60 words
    write(tmp_path, "long.md", "# Garden\n\n" + "\n\n".join([paragraph] * 3) + "\n\n"
          + "word " * 300)
    kb = KnowledgeBase.from_folder(tmp_path)
    assert all(p.title == "Garden" for p in kb.passages)
    assert all(len(p.text.split()) <= 120 for p in kb.passages)
    assert sum(len(p.text.split()) for p in kb.passages) == 180 + 300


def test_text_before_a_heading_is_titled_after_the_file() -> None:
    passages = split_passages("Plain text first.\n\n# Later\n\nMore.", "faq/house-rules.txt")
    assert [p.title for p in passages] == ["House rules", "Later"]


def test_markdown_is_cleaned_for_reading_aloud() -> None:
    text = ("# **Menu** #\n\n- Pasta for *12 euros*\n- See [our site](https://x.example)\n\n"
            "```\n# not a heading\n```\n")
    [menu] = split_passages(text, "m.md")
    assert menu.title == "Menu"
    assert menu.text == "Pasta for 12 euros. See our site. # not a heading"


def test_recursive_sorted_and_only_md_and_txt(tmp_path: Path) -> None:
    write(tmp_path, "b.md", "Bravo topic.")
    write(tmp_path, "a/z.txt", "Zulu topic.")
    write(tmp_path, "a.md", "Alpha topic.")
    write(tmp_path, "notes.rst", "Restructured topic.")
    write(tmp_path, "empty.md", "  \n\n")
    kb = KnowledgeBase.from_folder(tmp_path)
    assert [p.source for p in kb.passages] == ["a.md", "a/z.txt", "b.md"]
    assert kb.search("restructured") == []


def test_ties_are_broken_by_document_order(tmp_path: Path) -> None:
    for name in ("n3.md", "n1.md", "n2.md"):
        write(tmp_path, name, "# Pets\n\nDogs are welcome on the terrace.")
    kb = KnowledgeBase.from_folder(tmp_path)
    hits = kb.search("dog terrace", k=3)
    assert [h.source for h in hits] == ["n1.md", "n2.md", "n3.md"]
    assert len({h.score for h in hits}) == 1


def test_title_words_are_searchable(tmp_path: Path) -> None:
    write(tmp_path, "x.md", "# Wifi\n\nAsk the staff for the code.\n\n# Toilets\n\nDownstairs.")
    kb = KnowledgeBase.from_folder(tmp_path)
    assert kb.search("wifi")[0].text == "Ask the staff for the code."


def test_non_utf8_file_is_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "good.md", "Terrace seating in summer.")
    (tmp_path / "bad.md").write_bytes(b"caf\xe9 au lait \xff\xfe")
    with caplog.at_level(logging.WARNING, logger="voxbus_llm.knowledge"):
        kb = KnowledgeBase.from_folder(tmp_path)
    assert [p.source for p in kb.passages] == ["good.md"]
    assert any("bad.md" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_missing_folder_raises_value_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        KnowledgeBase.from_folder(missing)
    file = tmp_path / "file.md"
    file.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(file))):
        KnowledgeBase.from_folder(file)


def test_empty_folder_builds_an_empty_base(tmp_path: Path) -> None:
    kb = KnowledgeBase.from_folder(tmp_path)
    assert len(kb) == 0
    assert kb.answer_text("anything") == NO_MATCH


def test_two_hundred_documents_are_indexed(tmp_path: Path) -> None:
    for i in range(200):
        write(tmp_path, f"doc{i:03}.md", f"# Item {i}\n\nThe widget number w{i} costs {i} euros.")
    kb = KnowledgeBase.from_folder(tmp_path)
    assert len(kb) == 200
    assert kb.search("widget w123")[0].source == "doc123.md"


# --- tokenizer ----------------------------------------------------------------------------


def test_tokenize_drops_stop_words_and_stems() -> None:
    assert tokenize("When are you OPENING on Sundays?") == ["open", "sunday"]
    assert tokenize("parking") == tokenize("park") == tokenize("parks") == ["park"]
    assert tokenize("What's the chef's special") == ["chef", "special"]


@pytest.mark.parametrize(("words", "expected"), [
    (("hours", "hour"), "hour"),
    (("dishes", "dish"), "dish"),
    (("allergies", "allergy"), "allergy"),
    (("booked", "booking", "books", "book"), "book"),
    (("close", "closed", "closing"), "clos"),
    (("stopped", "stop"), "stop"),
    (("glass", "glasses"), "glass"),
    (("bus", "buses"), "bus"),
])
def test_stemmer_conflates_inflections(words: tuple[str, ...], expected: str) -> None:
    assert {stem(w) for w in words} == {expected}


def test_passage_is_frozen() -> None:
    passage = Passage("a.md", "T", "text")
    with pytest.raises(dataclasses.FrozenInstanceError):
        passage.score = 1.0  # type: ignore[misc]
