"""Every file the configuration names, checked when it is loaded: exists, readable, and of the right kind.

Why at load: a chime that is not a WAV, a custom wake model that is missing or a `wav:` output in a folder
that does not exist used to end in a traceback and exit 1 half-way through start-up, so systemd restarted
the daemon in a loop. Found here, each is a ConfigError (exit 78, which systemd does not restart) naming the
key, the path and the fix; `hark check` lists the very same messages.

The checks stay cheap (no model is loaded): a WAV's header is read (a chime, being played whole, is read
whole), an ONNX file's top-level protobuf fields are walked by their lengths, a Piper voice's JSON is parsed.
Built-in wake models and the default Piper voice that are simply not fetched yet are not configuration
mistakes: `hark check` names them with "run scripts/fetch-models" (daemon.config.models).
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import BinaryIO

from daemon.config.models import DEFAULT_VOICE, PIPER_DIR, WAKE_DIR
from daemon.config.settings import BUILTIN_WAKE_MODELS, ConfigError, Settings

CHIME_MAX_BYTES = 16 * 1024 * 1024
"""A chime is played whole from memory; a bigger file is almost certainly the wrong file."""
VOICE_JSON_MAX_BYTES = 4 * 1024 * 1024
_ONNX_MAX_FIELDS = 100_000
_ONNX_IR_VERSION, _ONNX_GRAPH = 1, 7
"""ModelProto field numbers: every ONNX model carries ir_version and a graph."""


def check_files(settings: Settings) -> None:
    """Raise one ConfigError listing every unusable file the configuration names."""
    problems = file_problems(settings)
    if problems:
        raise ConfigError("files named in the configuration are unusable:\n  " + "\n  ".join(problems))


def check_commands(settings: Settings) -> None:
    """Raise one ConfigError listing every mistake in [commands] (hassil is imported only when declared)."""
    if not settings.commands.intents and settings.commands.local == "off":
        return
    from daemon.intents.check import problems

    lines = problems(settings)
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def file_problems(settings: Settings) -> list[str]:
    """One message per unusable file (empty = all fine); each names the key, the path and the fix."""
    problems: list[str] = []
    for name in ("wake", "done", "error"):
        problems += _chime(name, getattr(settings.chimes, name))
    for i, model in enumerate(settings.wake.models):
        problems += _wake_model(f"wake.models[{i}].name", model.name, settings.models_dir)
    if settings.audio.input.startswith("wav:"):
        problems += _wav_input(settings.audio.input[4:])
    if settings.audio.output.startswith("wav:"):
        problems += _wav_output(settings.audio.output[4:])
    problems += _voice(settings.fallback.voice, settings.models_dir)
    if settings.mqtt.host and settings.mqtt.tls:
        problems += _tls(settings)
    return problems


# --- helpers -------------------------------------------------------------------------------------------------


def _readable_file(key: str, spec: str, path: Path, expected: str) -> str | None:
    """None if `path` is a regular readable file; else a message naming key, path and the fix."""
    shown = f"{key} = {spec!r}"
    where = f" ({path})" if str(path) != spec else ""
    if not path.exists():
        return f"{shown}: file not found{where}; expected {expected}"
    if path.is_dir():
        return f"{shown}: is a folder{where}; expected {expected}"
    if not path.is_file():
        return f"{shown}: not a regular file{where}; expected {expected}"
    if not os.access(path, os.R_OK):
        return f"{shown}: permission denied{where}; make it readable by the user hark runs as"
    return None


def _chime(name: str, spec: str) -> list[str]:
    spec = spec.strip()
    if spec in ("", "builtin"):
        return []
    key, fix = f"chimes.{name}", 'use "builtin", "" (off) or a path to a PCM WAV file'
    path = Path(spec).expanduser()
    problem = _readable_file(key, spec, path, f"a PCM WAV file ({fix})")
    if problem:
        return [problem]
    if path.stat().st_size > CHIME_MAX_BYTES:
        return [f"{key} = {spec!r}: {path.stat().st_size} bytes is too big for a chime (limit 16 MB); {fix}"]
    from daemon.audio.resample import AudioFileError, read_wav_mono16

    try:
        pcm, _ = read_wav_mono16(path, None)  # the very reader the chimes are loaded with
    except AudioFileError as e:
        return [f"{key} = {spec!r}: {e}; {fix}"]
    return [] if pcm else [f"{key} = {spec!r}: the WAV holds no audio; {fix}"]


def _wake_model(key: str, name: str, models_dir: Path) -> list[str]:
    if name in BUILTIN_WAKE_MODELS:
        return []  # fetched by scripts/fetch-models; a missing one is named by `hark check`
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists():
        path = models_dir / WAKE_DIR / path  # where daemon.config.models looks next
    expected = "an openWakeWord .onnx model (a path, or a file in <models>/openwakeword)"
    problem = _readable_file(key, name, path, expected)
    if problem:
        return [problem]
    onnx = _onnx_problem(path)
    return [f"{key} = {name!r}: {onnx}; expected {expected}"] if onnx else []


def _wav_input(spec: str) -> list[str]:
    key, path = "audio.input", Path(spec).expanduser()
    problem = _readable_file(key, f"wav:{spec}", path, "a PCM WAV file to read instead of a microphone")
    if problem:
        return [problem]
    from daemon.audio.resample import AudioFileError, wav_info

    try:
        info = wav_info(path)
    except AudioFileError as e:
        return [f"{key} = 'wav:{spec}': {e}"]
    if info.rate_hz <= 0 or info.width not in (1, 2, 3, 4) or info.channels < 1:
        found = f"{info.rate_hz} Hz, {info.width * 8}-bit, {info.channels} channel(s)"
        return [f"{key} = 'wav:{spec}': unsupported WAV ({found}); expected integer PCM"]
    return []


def _wav_output(spec: str) -> list[str]:
    key, path = f"audio.output = 'wav:{spec}'", Path(spec).expanduser()
    folder = path.parent
    if path.is_dir():
        return [f"{key}: is a folder; expected a file name to write, e.g. wav:{path / 'answer.wav'}"]
    if not folder.is_dir():
        return [f"{key}: folder {folder} does not exist; create it or write somewhere else"]
    if not os.access(folder, os.W_OK | os.X_OK) and not (path.exists() and os.access(path, os.W_OK)):
        return [f"{key}: folder {folder} is not writable by the user hark runs as; pick a writable folder"]
    if path.exists() and not os.access(path, os.W_OK):
        return [f"{key}: {path} exists and is not writable; remove it or pick another name"]
    return []


def _voice(voice: str, models_dir: Path) -> list[str]:
    key = f"fallback.voice = {voice!r}"
    if voice.endswith(".onnx"):
        path, fetched = Path(voice).expanduser(), False
    elif not voice or "/" in voice or os.sep in voice:
        return [f"{key}: expected a voice name like {DEFAULT_VOICE} or a path to a Piper voice ending in .onnx"]
    else:
        path, fetched = models_dir / PIPER_DIR / f"{voice}.onnx", True
        json_path = path.with_name(path.name + ".json")
        if not path.exists() and not json_path.exists():
            if voice == DEFAULT_VOICE:
                return []  # not fetched yet: start without it, as before; `hark check` says "run scripts/fetch-models"
            return [f"{key}: voice not found in {path.parent}; run scripts/fetch-models --voice {voice}"]
    fix = f"run scripts/fetch-models --voice {voice}" if fetched else "check fallback.voice"
    expected = f"a Piper voice .onnx with its .onnx.json next to it ({fix})"
    problems = []
    problem = _readable_file("fallback.voice", voice, path, expected)
    if problem is None:
        onnx = _onnx_problem(path)
        problem = f"{key}: {path}: {onnx}; {fix}" if onnx else None
    if problem:
        problems.append(problem)
    json_path = path.with_name(path.name + ".json")
    problem = _readable_file("fallback.voice", voice, json_path, f"the voice's config {json_path.name} ({fix})")
    problems.append(problem if problem else _voice_json(key, json_path, fix))
    return [p for p in problems if p]


def _voice_json(key: str, path: Path, fix: str) -> str:
    """'' if `path` is a Piper voice config; else the problem."""
    if path.stat().st_size > VOICE_JSON_MAX_BYTES:
        return f"{key}: {path} is {path.stat().st_size} bytes, too big for a voice config; {fix}"
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        return f"{key}: {path} is not valid JSON ({e}); {fix}"
    if not isinstance(obj, dict) or not isinstance(obj.get("audio"), dict) or "phoneme_id_map" not in obj:
        return f"{key}: {path} is not a Piper voice config (no audio / phoneme_id_map); {fix}"
    return ""


def _tls(settings: Settings) -> list[str]:
    m = settings.mqtt
    problems = []
    for name in ("ca_file", "cert_file", "key_file"):
        spec = getattr(m, name)
        if spec:
            problem = _readable_file(f"mqtt.{name}", spec, Path(spec).expanduser(), "a PEM file")
            problems += [problem] if problem else []
    if bool(m.cert_file) != bool(m.key_file):
        problems.append("mqtt.cert_file, mqtt.key_file: set both for a client certificate, or neither")
    if problems:
        return problems
    try:
        ctx = ssl.create_default_context(cafile=str(Path(m.ca_file).expanduser()) if m.ca_file else None)
        if m.cert_file:
            cert, key = str(Path(m.cert_file).expanduser()), str(Path(m.key_file).expanduser())
            ctx.load_cert_chain(cert, key, password=lambda: b"")  # never prompt on a terminal for a passphrase
    except (ssl.SSLError, OSError, ValueError) as e:
        return [f"mqtt TLS files unusable: {e} (check mqtt.ca_file/cert_file/key_file: PEM, key not encrypted)"]
    return []


def _onnx_problem(path: Path) -> str | None:
    """None if `path` looks like an ONNX model: its top-level protobuf fields parse and include ir_version and
    a graph. Only field headers are read; the bodies are skipped by their lengths, so a 60 MB voice costs
    a few reads."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return "the file is empty, not an ONNX model"
            seen: set[int] = set()
            for _ in range(_ONNX_MAX_FIELDS):
                if f.tell() >= size:
                    break
                field, skip = _field_header(f)
                if field == 0:
                    return "not an ONNX model (the file is not a protobuf ModelProto)"
                if skip < 0 or f.tell() + skip > size:
                    return "not an ONNX model, or truncated (a field runs past the end of the file)"
                f.seek(skip, os.SEEK_CUR)
                seen.add(field)
    except OSError as e:
        return f"cannot read ({e})"
    if not {_ONNX_IR_VERSION, _ONNX_GRAPH} <= seen:
        return "not an ONNX model (no ir_version or graph)"
    return None


def _field_header(f: BinaryIO) -> tuple[int, int]:
    """(field number, bytes to skip to the next field); field 0 = not protobuf, skip -1 = cut off."""
    tag = _varint(f)
    if tag is None or tag >> 3 == 0:
        return 0, 0
    field, wire = tag >> 3, tag & 7
    if wire == 0:
        return field, 0 if _varint(f) is not None else -1
    if wire == 1:
        return field, 8
    if wire == 5:
        return field, 4
    if wire == 2:
        length = _varint(f)
        return field, length if length is not None else -1
    return 0, 0  # groups (3, 4) are not in ONNX; 6, 7 do not exist


def _varint(f: BinaryIO) -> int | None:
    """A protobuf varint, or None if it is cut off or longer than 10 bytes."""
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
    return None
