from voxbus_common.clauses import ClauseSplitter, clean_for_speech


def feed(text: str, step: int = 3) -> list[str]:
    splitter = ClauseSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i : i + step])
    return out + splitter.flush()


def test_sentences_are_cut_as_they_complete() -> None:
    assert feed("Hello there. How are you today? Fine!") == [
        "Hello there.", "How are you today?", "Fine!"]


def test_long_clause_cut_at_comma_short_one_not() -> None:
    assert feed("Sure thing. Yes, I can help with that booking, just tell me the date.") == [
        "Sure thing.", "Yes, I can help with that booking,", "just tell me the date."]


def test_first_clause_may_be_short_for_a_fast_first_audio() -> None:
    assert feed("Of course, I can help with that booking, just tell me the date.") == [
        "Of course,", "I can help with that booking,", "just tell me the date."]


def test_markdown_is_not_spoken() -> None:
    assert clean_for_speech("**Sure**, here's `code` #1") == "Sure, here's code 1"


def test_run_on_text_is_bounded() -> None:
    clauses = feed("word " * 100)
    assert all(len(c) <= 220 for c in clauses)
    assert " ".join(clauses).split() == ["word"] * 100


def test_nothing_lost_without_punctuation() -> None:
    assert feed("no punctuation at all") == ["no punctuation at all"]


def test_a_long_first_sentence_is_cut_after_a_few_words() -> None:
    """Time to first audio: a TTS that synthesizes a clause whole starts sooner."""
    splitter = ClauseSplitter()
    out: list[str] = []
    reply = "We have a variety of Italian dishes including pasta. We also serve wine."
    for word in reply.split():
        out += splitter.push(word + " ")
    out += splitter.flush()
    assert out == ["We have a variety of Italian", "dishes including pasta.",
                   "We also serve wine."]
    splitter = ClauseSplitter()  # never cut after "the": one more word
    out = [c for w in ["Our", "kitchen", "is", "open", "to", "the", "public", "today"]
           for c in splitter.push(w + " ")]
    assert out == ["Our kitchen is open to the public"]
