"""The recognizer's two PocketSphinx searches, each in a child process of its own.

Why processes: PocketSphinx holds the GIL for the whole of a decode (measured: a Python thread beside
`process_raw` ran at 7 % of its idle rate), so the grammar search and the phone loop in two threads of the
daemon ran one after the other (~110 ms and ~150 ms for a two-second command: 260 ms in all), and each
stalled the daemon's event loop while it ran. In two child processes they run side by side on two cores,
the decision costs the longer of the two, and the daemon keeps listening meanwhile (which is what lets the
recognizer start in the pause, before the end of speech is declared: see daemon.intents.responder).

Each child holds one decoder (started once, with the recognizer) and answers one request at a time over its
stdin/stdout: `<u32 length><PCM16>` in, `<u32 length><JSON>` out. The grammar search answers the best path's
words (word, first frame, last frame) and its natural-log acoustic score, read from the lattice file (a long,
poorly fitting word's score underflows the probability the Python API returns it as; the best path's links
are looked up there); the phone loop answers its path's score.

    python -m daemon.intents.decoders '<{"config": decoder options, "jsgf": grammar or null}>'
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

SENSCR_SHIFT = 10
"""PocketSphinx keeps search scores shifted right by 10 bits; lattices shift them back, segments of the phone
loop (allphone search) do not."""
BOUNDARIES = ("<s>", "</s>")
"""Lattice entries that are no audio: <s> carries the silence-insertion penalty, </s> repeats the last silence."""
LENGTH = struct.Struct("<I")
START_TIMEOUT_S = 30.0


class DecoderError(RuntimeError):
    """A decoder's process could not be started, refused its search, or stopped answering."""


class DecoderProcess:
    """One PocketSphinx search in a child process: `submit(pcm)`, do other work, then `result()`."""

    def __init__(self, name: str, config: dict[str, Any], jsgf: str | None = None) -> None:
        self.name = name
        self._spec = json.dumps({"config": config, "jsgf": jsgf})
        self.cpu_s = 0.0
        """CPU time the child spent decoding so far (benchmarks add it to the daemon's own)."""
        self._child = self._spawn()
        self._pending = False

    @property
    def pid(self) -> int:
        return self._child.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding the daemon package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        return subprocess.Popen(
            [sys.executable, "-m", "daemon.intents.decoders", self._spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def wait_ready(self) -> None:
        """Block until the child has built its decoder (DecoderError saying why it could not, or that it did
        not say anything in START_TIMEOUT_S: a child that hangs while loading must not hang the daemon's start)."""
        assert self._child.stdout is not None
        ready, _, _ = select.select([self._child.stdout], [], [], START_TIMEOUT_S)
        if not ready:
            self._child.kill()
            self._child.wait(timeout=2.0)
            raise DecoderError(f"the {self.name} process did not get ready in {START_TIMEOUT_S:g} s (stopped)")
        hello = self._read()
        if hello is None:
            code = self._child.wait(timeout=START_TIMEOUT_S)
            raise DecoderError(f"the {self.name} process exited with status {code} before it was ready")
        if "error" in hello:
            self._stop()
            raise DecoderError(str(hello["error"]))

    def submit(self, pcm16k: bytes) -> None:
        """Start decoding this audio in the child (a dead child is started again, once)."""
        for attempt in (1, 2):
            try:
                assert self._child.stdin is not None
                self._child.stdin.write(LENGTH.pack(len(pcm16k)) + pcm16k)
                self._child.stdin.flush()
                self._pending = True
                return
            except OSError as e:
                if attempt == 2:
                    raise DecoderError(f"the {self.name} process does not take requests: {e}") from e
                log.warning("the %s process is gone (%s): starting it again", self.name, e)
                self._restart()

    def result(self) -> dict[str, Any]:
        """The child's answer to the submitted audio."""
        assert self._pending
        self._pending = False
        reply = self._read()
        if reply is None:
            self._restart()
            raise DecoderError(f"the {self.name} process died while decoding (it is started again)")
        self.cpu_s += float(reply.get("cpu_s", 0.0))
        if "error" in reply:
            raise DecoderError(f"the {self.name} process failed to decode the request: {reply['error']}")
        return reply

    def _read(self) -> dict[str, Any] | None:
        assert self._child.stdout is not None
        header = self._child.stdout.read(LENGTH.size)
        if len(header) != LENGTH.size:
            return None
        body = self._child.stdout.read(LENGTH.unpack(header)[0])
        answer: dict[str, Any] = json.loads(body)
        return answer

    def _restart(self) -> None:
        self._stop()
        self._child = self._spawn()
        self.wait_ready()

    def _stop(self) -> None:
        try:
            if self._child.stdin is not None:
                self._child.stdin.close()  # EOF: the child exits
            self._child.wait(timeout=2.0)
        except (OSError, subprocess.TimeoutExpired):
            self._child.kill()
            self._child.wait(timeout=2.0)

    def close(self) -> None:
        self._stop()


# --- the child ------------------------------------------------------------------------------------------------


def serve(spec: dict[str, Any], stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child's loop: build the decoder, say so, answer requests until stdin closes."""

    def send(answer: dict[str, Any]) -> None:
        body = json.dumps(answer).encode()
        stdout.write(LENGTH.pack(len(body)) + body)
        stdout.flush()

    try:
        from pocketsphinx import Decoder

        decoder = Decoder(**spec["config"])
        grammar = spec.get("jsgf")
        if grammar:
            decoder.add_jsgf_string("hark", grammar.encode())
            decoder.activate_search("hark")
    except Exception as e:
        send({"error": f"{type(e).__name__}: {e}"})
        return
    send({"ready": True})
    with tempfile.TemporaryDirectory(prefix="hark-commands-") as scratch:
        lattice = Path(scratch) / "lattice.txt"
        while True:
            header = stdin.read(LENGTH.size)
            if len(header) != LENGTH.size:
                return
            pcm = stdin.read(LENGTH.unpack(header)[0])
            c0 = time.process_time()
            try:
                decoder.start_utt()
                decoder.process_raw(pcm, full_utt=True)
                decoder.end_utt()
                segs = list(decoder.seg()) if decoder.hyp() is not None else []
                if grammar:
                    answer = grammar_answer(decoder, segs, lattice)
                else:
                    answer = {"score": float(sum(math.log(s.ascore) for s in segs)) * (1 << SENSCR_SHIFT)}
            except Exception as e:  # answered, not raised: the parent raises, the child keeps serving
                answer = {"error": f"{type(e).__name__}: {e}"}
            send({**answer, "cpu_s": time.process_time() - c0})


def grammar_answer(decoder: Any, segs: list[Any], lattice: Path) -> dict[str, Any]:
    """The best path's segments [word, first frame, last frame] and its natural-log acoustic score."""
    words = [[s.word, s.start_frame, s.end_frame] for s in segs]
    if not any(s.word not in ("<sil>", "[NOISE]", "[SPEECH]", *BOUNDARIES) for s in segs):
        return {"segs": words, "path": 0.0}
    decoder.get_lattice().write(str(lattice))
    nodes, edges = read_lattice(lattice.read_text(encoding="utf-8"))
    starting: dict[tuple[str, int], list[int]] = {}
    for node, key in nodes.items():
        starting.setdefault(key, []).append(node)
    total = 0
    for seg, after in zip(segs, segs[1:], strict=False):
        if seg.word in BOUNDARIES:
            continue
        # the link that leaves this word for the next one (several nodes can share a word and start frame:
        # one per grammar state; the best path took the best of them)
        scores = [
            score
            for node in starting.get((seg.word, seg.start_frame), [])
            for nxt, score in edges.get(node, [])
            if nodes[nxt][1] == after.start_frame
        ]
        if not scores:  # pragma: no cover - every link of the best path is in the lattice
            raise DecoderError(f"the lattice has no link from {seg.word} at frame {seg.start_frame}")
        total += max(scores)
    return {"segs": words, "path": total * float(decoder.logmath.log_to_ln(1))}


def read_lattice(text: str) -> tuple[dict[int, tuple[str, int]], dict[int, list[tuple[int, int]]]]:
    """A PocketSphinx lattice file: node → (word, start frame); node → [(next node, acoustic score in log units)]."""
    nodes: dict[int, tuple[str, int]] = {}
    edges: dict[int, list[tuple[int, int]]] = {}
    section = ""
    for line in text.splitlines():
        parts = line.split()
        if not parts or not parts[0].lstrip("-").isdigit():
            section = parts[0] if parts else ""
            continue
        if section == "Nodes":
            nodes[int(parts[0])] = (parts[1], int(parts[2]))
        elif section == "Edges":
            edges.setdefault(int(parts[0]), []).append((int(parts[1]), int(parts[2])))
    return nodes, edges


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)
