"""Issue 12, the latency a user notices: the cascade's connections are open before the user stops speaking and
stay open from one request to the next; a long first clause is spoken before its sentence is written out
(timing goals themselves are in scripts/bench_cascade.py)."""

from __future__ import annotations

from pathlib import Path

from daemon.answer.voice import SentenceSplitter
from tests.answer.test_cascade import make_settings, turn
from tests.cascade_server import ChatReply, ThreadedCascadeServer
from tests.fixtures_realtime import API_KEY
from tests.harness import run_once
from tests.speech import Speech

REMOTE_VOICE = {"model": "gpt-4o-mini-tts", "voice": "marin"}


async def test_connections_are_open_before_the_turn_ends_and_kept_across_turns(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    """Two requests 6 s apart (longer than the SDK's 5 s keep-alive): each stage's one connection is opened
    at the first wake word and carries every request of both turns; none is opened after a turn ended."""
    server = cascade_server.server
    clip = speech.concat([*turn(speech), *turn(speech)], [1.0, 0.4, 6.0, 0.4, 3.0])
    settings = make_settings(
        tmp_path,
        models_dir,
        speech.wav(clip, "cascade-warm"),
        cascade_server.url,
        tts=REMOTE_VOICE,
        audio={"realtime_pace": True},
    )
    run = await run_once(settings, api_key=API_KEY)
    ends = [r["t"] for r in run.events("speech_ended")]
    assert len(ends) == 2 and len(run.events("playback_started")) == 2
    assert [server.record.count(stage) for stage in ("stt", "llm")] == [2, 2] and server.record.count("tts") >= 2
    assert len(server.record.opened) == 3, f"one connection per stage, kept: {server.record.via}"
    requests = [(stage, conn) for stage, conn in server.record.via if stage]
    assert requests, "no stage request reached the server"
    for stage, conn in requests:
        assert server.record.opened[conn] < ends[0], f"the {stage} connection was opened after the turn ended"


async def test_a_long_first_clause_is_spoken_while_the_model_still_writes(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    """A model writing slowly (150 ms a word): the first clause goes to the voice at its comma and plays
    before the model has finished the sentence; the rest follows sentence by sentence."""
    server = cascade_server.server
    server.token_ms = 150
    server.default_reply = ChatReply("The kitchen light is on now, and the hallway light is off as you asked. Bye.")
    clip = speech.concat(turn(speech), [1.0, 0.4, 5.0])
    settings = make_settings(
        tmp_path, models_dir, speech.wav(clip, "cascade-clause"), cascade_server.url, tts=REMOTE_VOICE
    )
    run = await run_once(settings, api_key=API_KEY)
    spoken = [body["input"] for body in server.record.bodies("tts")]
    assert spoken == ["The kitchen light is on now,", "and the hallway light is off as you asked.", "Bye."]
    written = [r["t"] for r in run.events("transcript_delta") if r.get("role") == "assistant"]
    assert run.first("playback_started")["t"] < written[-1], "the first audio waited for the whole answer"


def test_a_first_clause_is_cut_only_when_it_has_enough_words() -> None:
    splitter = SentenceSplitter()
    assert [splitter.feed("Well, "), splitter.clause(4)] == [[], None]  # "Well," alone would only add a pause
    assert [splitter.feed("the light is on"), splitter.clause(4)] == [[], None]  # no comma yet
    assert (splitter.feed(", and the door"), splitter.clause(4)) == ([], "Well, the light is on,")
    assert splitter.feed(" is locked. Bye.") == ["and the door is locked."]
    assert splitter.flush() == "Bye."
