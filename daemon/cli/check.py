"""`hark check`: one line per check, ✓ / ✗ (with the fix) / ! (works, but with less).

Exit 78 (EX_CONFIG) when a file the configuration names is unusable — the same messages and status
`hark run` gives — else 1 on any ✗, else 0.
"""

from __future__ import annotations

import os
import platform
import sys

from daemon.cli.files import file_problems
from daemon.config.models import POCKETSPHINX_FILES, missing_models, pocketsphinx_model_dir, turn_model_path
from daemon.config.settings import EX_CONFIG, Secrets, Settings

OK, FAIL, WARN = "✓", "✗", "!"


def _line(mark: str, text: str) -> None:
    print(f"{mark} {text}", flush=True)


def _audio(settings: Settings, skip_wav: bool) -> list[tuple[str, str]]:
    from daemon.audio.devices import DeviceError, resolve

    out = []
    for kind in ("input", "output"):
        spec = getattr(settings.audio, kind)
        if spec.startswith("wav:"):
            if not skip_wav:  # checked with the other files; their problems are listed above
                out.append((OK, f"audio.{kind}: WAV file {spec[4:]}"))
            continue
        try:
            dev = resolve(spec, kind)
            out.append((OK, f"audio.{kind}: device {dev.index} {dev.name!r}"))
        except DeviceError as e:
            out.append((FAIL, f"{e} (see `hark devices`; set audio.{kind} in the config)"))
        except Exception as e:  # PortAudio itself failing to start
            out.append((FAIL, f"audio.{kind}: PortAudio failed: {e} (is portaudio installed?)"))
    return out


async def _cascade(settings: Settings, secrets: Secrets) -> list[tuple[str, str]]:
    """One line per cascade stage: reachable, key accepted, model listed (Piper needs only its model file)."""
    from daemon.answer.cascade.stage import check_stage

    c = settings.cascade
    out = []
    for stage, stage_settings in (("stt", c.stt), ("llm", c.llm), ("tts", c.tts)):
        if stage_settings == "piper":
            out.append((OK, "cascade.tts: the local Piper voice (fallback.voice)"))
            continue
        ok, line = await check_stage(stage, stage_settings, secrets)  # type: ignore[arg-type]
        out.append((OK if ok else FAIL, line))
    return out


async def run_checks(settings: Settings, secrets: Secrets) -> int:
    results: list[tuple[str, str]] = [(OK, f"config valid; Python {platform.python_version()} on {platform.machine()}")]
    if sys.version_info < (3, 10):
        results.append((FAIL, "Python 3.10 or newer is required"))
    bad_files = file_problems(settings)
    results += [(FAIL, p) for p in bad_files] or [(OK, "every file the configuration names is usable")]
    missing = missing_models(settings)
    results += [(FAIL, m) for m in missing] or [(OK, f"models present in {settings.models_dir}")]
    turn_problem = turn_model_problem(settings)
    if turn_problem is not None:
        results.append((FAIL, turn_problem))
    elif settings.endpoint.turn_model == "none":
        silence_ms = settings.endpoint.end_silence_ms
        results.append((OK, f"end of turn: {silence_ms} ms of silence (endpoint.turn_model = none)"))
    else:
        results.append((OK, "end of turn: Smart Turn v3 model loads"))
        words_problem = turn_words_problem(settings)
        if words_problem is not None:
            results.append((FAIL, words_problem))
        elif settings.endpoint.turn_words != "none":
            results.append((OK, "end of turn: the last word is heard by PocketSphinx (en-US, from its wheel)"))
    results += _audio(settings, skip_wav=bool(bad_files))
    if settings.conversation.responder == "cloud" and settings.conversation.backend == "cascade":
        results += await _cascade(settings, secrets)
    elif secrets.openai_api_key:
        results.append((OK, "OPENAI_API_KEY is set"))
    else:
        results.append(
            (
                WARN,
                "OPENAI_API_KEY is not set: answers come from the local voice only "
                "(add it to /etc/hark/env, or export it, to use the Realtime API)",
            )
        )
    if settings.mqtt.host:
        from daemon.mqtt.bridge import check_broker

        ok, message = await check_broker(settings, secrets.mqtt_password)
        results.append((OK if ok else FAIL, message))
    else:
        results.append((OK, "MQTT off (set mqtt.host to connect to a broker)"))
    state = settings.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True)
        writable = os.access(state, os.W_OK)
    except OSError:
        writable = False
    results.append(
        (OK, f"state directory {state} writable")
        if writable
        else (WARN, f"state directory {state} not writable: mute/volume will not survive a restart")
    )
    for mark, text in results:
        _line(mark, text)
    failed = sum(1 for mark, _ in results if mark == FAIL)
    print(f"{failed} problem(s) found" if failed else "all checks passed", flush=True)
    if bad_files:
        return EX_CONFIG
    return 1 if failed else 0


def turn_model_problem(settings: Settings) -> str | None:
    """For `hark check`: why the configured turn model cannot be used (missing, corrupt), None if it can.
    Loads the model (~0.2 s), because a corrupt file is only found by loading it."""
    if settings.endpoint.turn_model == "none":
        return None
    from daemon.listen.smart_turn import SmartTurn, TurnModelError

    path = turn_model_path(settings.models_dir)
    try:
        SmartTurn(path)
    except TurnModelError as e:
        return (
            f'{e} (or set endpoint.turn_model = "none"); until then requests end after '
            f"{settings.endpoint.end_silence_ms} ms of silence"
        )
    return None


def turn_words_problem(settings: Settings) -> str | None:
    """For `hark check`: why the word recognizer (endpoint.turn_words) cannot be used, None if it can."""
    if settings.endpoint.turn_model == "none" or settings.endpoint.turn_words == "none":
        return None
    try:
        model = pocketsphinx_model_dir()
    except ImportError as e:
        return f"endpoint.turn_words: pocketsphinx is not installed ({e}): run scripts/install-deps"
    missing = [p for p in POCKETSPHINX_FILES if not (model / p).exists()]
    if missing:
        return (
            f"endpoint.turn_words: the pocketsphinx wheel lacks {', '.join(missing)} in {model}: reinstall it "
            '(scripts/install-deps), or set endpoint.turn_words = "none"; until then the turn model decides alone'
        )
    return None
