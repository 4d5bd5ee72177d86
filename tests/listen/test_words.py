"""The last word so far, from PocketSphinx's streaming recognizer, on real speech."""

from __future__ import annotations

import pytest

from daemon.cli.check import turn_words_problem
from daemon.config.settings import UNFINISHED_WORDS, EndpointSettings, Settings
from daemon.listen.turn import load_turn_words
from daemon.listen.words import LastWord, Words, WordsError
from tests.listen.turn_speech import fluent_hesitant, split_at_pauses, word_boundaries
from tests.speech import Speech, read_wav


def hear(words: Words, pcm: bytes) -> LastWord:
    """A new request: the audio in 30 ms pieces, as the turn detector feeds it, then the last word."""
    words.restart()
    for at in range(0, len(pcm), 960):
        words.feed(pcm[at : at + 960])
    return words.last_word().result(timeout=10)


def test_a_request_that_stops_on_to_is_unfinished_and_the_whole_one_is_not(speech: Speech, words: Words) -> None:
    pcm = read_wav(speech.piper("Send a message to, my sister."))[0]
    before_pause = split_at_pauses(pcm, 1)[0]
    heard = hear(words, bytes(6400) + before_pause.tobytes() + bytes(6400))
    assert heard == LastWord("to", True, heard.lag_ms, heard.end_probability, True), "a rare sentence end too"
    heard = hear(words, bytes(6400) + pcm.tobytes() + bytes(6400))
    assert heard.word == "sister" and not heard.unfinished
    assert words.audio_s > 0 and words.decode_s > 0


def test_the_language_model_knows_where_sentences_end(words: Words) -> None:
    """P(</s> | the last two words) from the recognizer's own trigram model: what turn_min_end_probability
    compares against. Misheard or paused-after-a-content-word endings are rare sentence ends."""
    assert words.end_probability(["set", "a", "timer", "for", "ten", "minutes"]) > 0.1
    assert words.end_probability(["remind", "me", "too"]) > 0.1
    assert words.end_probability(["what", "is", "the", "weather", "we"]) < 0.05
    assert words.end_probability(["turn", "on", "the"]) < 0.01
    assert words.end_probability([]) == 1.0


def test_an_unlikely_sentence_end_is_flagged_when_asked_for(speech: Speech) -> None:
    """Real speech cut at a pause after a content word the language model rarely ends a sentence on."""
    pcm = read_wav(speech.piper("Start the washing, machine."))[0]
    before_pause = bytes(6400) + split_at_pauses(pcm, 1)[0].tobytes() + bytes(6400)
    whole = bytes(6400) + read_wav(speech.piper("Start the washing machine."))[0].tobytes() + bytes(6400)
    strict = Words(frozenset(UNFINISHED_WORDS), min_end_probability=0.05)
    try:
        paused = hear(strict, before_pause)
        assert paused.end_probability < 0.05 and paused.unlikely_end and not paused.unfinished, paused
        finished = hear(strict, whole)
        assert finished.word == "machine" and finished.end_probability > 0.05 and not finished.unlikely_end
    finally:
        strict.close()


def test_a_pause_inserted_in_fluent_speech_falls_after_the_word(speech: Speech, words: Words) -> None:
    """The fluent-cut test speech: forced alignment (Piper) and espeak-ng's own word events put the pause
    right after "to"; the recognizer hears it last, and the pause is as long as asked."""
    text = "Send a message to my sister."
    for engine, make in (("piper", speech.piper), ("espeak", lambda t: speech.espeak(t.lower()))):
        spoken = text if engine == "piper" else text.lower()
        pcm = read_wav(make(text))[0]
        clip = fluent_hesitant(pcm, word_boundaries(engine, pcm, spoken, [3]), [0.8])
        assert len(clip.spans) == 2 and abs(clip.spans[1].start - clip.spans[0].end - 12_800) < 320, clip.spans
        heard = hear(words, clip.pcm[: clip.spans[0].end + 3200].tobytes())
        assert heard.word == "to", (engine, heard)


def test_a_new_request_forgets_the_last_one(speech: Speech, words: Words) -> None:
    hear(words, read_wav(speech.piper("Turn on the kitchen lights."))[0].tobytes())
    words.restart()
    assert words.last_word().result(timeout=10).word == ""


def test_a_closed_recognizer_answers_with_an_error_not_an_exception_in_the_audio_path() -> None:
    closed = load_turn_words(EndpointSettings())
    assert closed is not None
    closed.close()
    assert isinstance(closed.feed(bytes(960)).exception(timeout=1), WordsError)
    with pytest.raises(WordsError, match="closed"):
        closed.last_word().result(timeout=1)


def test_settings_take_single_lower_case_words_and_none_turns_the_words_off() -> None:
    assert EndpointSettings().turn_unfinished_words == list(UNFINISHED_WORDS)
    assert {"the", "a", "to", "for", "my", "and"} <= set(UNFINISHED_WORDS)
    assert not {"on", "off", "it", "that", "too", "two"} & set(UNFINISHED_WORDS), "requests do end on these"
    with pytest.raises(ValueError, match="single lower-case words"):
        EndpointSettings(turn_unfinished_words=["The", "of the"])
    assert load_turn_words(EndpointSettings(turn_words="none")) is None
    assert load_turn_words(EndpointSettings(turn_model="none")) is None
    assert turn_words_problem(Settings()) is None
