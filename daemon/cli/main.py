"""The `hark` command: builds settings from config.toml and flags, then hands over to daemon.app.

Exit status: 0 done, 1 a check failed or the daemon failed, 2 usage, 78 (EX_CONFIG) bad configuration —
systemd's RestartPreventExitStatus=78 keeps a bad config from restart-looping.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import NoReturn

from daemon import __version__
from daemon.cli.files import check_commands, check_files
from daemon.config import loader as config_file
from daemon.config import settings as config
from daemon.config.settings import ConfigError, Secrets, Settings
from daemon.system import service

log = logging.getLogger("daemon")  # the package logger: every module logs under it


def _common(where: str) -> argparse.ArgumentParser:
    """--config and --set, accepted before and after the command, in any mix.

    The options before the command and those after it land in different attributes (`config_before`,
    `overrides_after`, ...): argparse copies a subcommand's results over the main parser's, so with one shared
    attribute the `--set` given before the command would silently vanish whenever another follows it.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        dest=f"config_{where}",
        metavar="FILE",
        help="config file (default: $HARK_CONFIG, /etc/hark/config.toml, else the checkout's config.toml)",
    )
    common.add_argument(
        "--set",
        dest=f"overrides_{where}",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one setting (repeatable), e.g. --set wake.threshold=0.6",
    )
    return common


def parser() -> argparse.ArgumentParser:
    common = _common("after")
    p = argparse.ArgumentParser(
        prog="hark", description="Smart-speaker daemon: wake word → OpenAI Realtime.", parents=[_common("before")]
    )
    p.add_argument("--version", action="version", version=f"hark {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon", parents=[common])
    run.add_argument("--trace", metavar="FILE", help="write a JSON-lines trace of every event")
    sub.add_parser("check", help="check config, models, audio devices, API key and broker", parents=[common])
    sub.add_parser("devices", help="list audio input and output devices", parents=[common])
    demo = sub.add_parser("demo", help="run the whole pipeline on a generated sample utterance", parents=[common])
    demo.add_argument(
        "--output",
        metavar="DEV",
        help='speaker for the answer (default: the configured one if it exists, else "wav:hark-demo-answer.wav")',
    )
    demo.add_argument("--text", default="What time is it?", help="the request spoken after the wake word")
    demo.add_argument("--trace", metavar="FILE", help="also write the JSON-lines trace here")
    say = sub.add_parser("say", help="speak text with the local voice through the configured speaker", parents=[common])
    say.add_argument("text", help="what to say")
    return p


def config_path(args: argparse.Namespace) -> str | None:
    """--config after the command wins over one before it (the later one, as with any repeated option)."""
    after: str | None = getattr(args, "config_after", None)
    before: str | None = getattr(args, "config_before", None)
    return after if after is not None else before


def overrides(args: argparse.Namespace) -> list[str]:
    """Every --set, in the order given: those before the command, then those after it."""
    return [*(getattr(args, "overrides_before", None) or []), *(getattr(args, "overrides_after", None) or [])]


def load_settings(args: argparse.Namespace) -> Settings:
    """`hark check` lists unusable files among its other checks; every other command refuses them at once."""
    settings = config_file.load(config_path(args), overrides(args))
    check_commands(settings)
    if args.command != "check":
        check_files(settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return 2
    try:
        settings = load_settings(args)
    except ConfigError as e:
        print(f"hark: {e}", file=sys.stderr)
        return config.EX_CONFIG
    service.setup_logging(settings.logging.level)
    secrets = Secrets.from_env()
    try:
        return dispatch(args, settings, secrets)
    except ConfigError as e:
        log.error("%s", e)
        return config.EX_CONFIG
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    if args.command == "run":
        from daemon import app

        if not secrets.openai_api_key:
            log.warning(
                "OPENAI_API_KEY is not set: every answer comes from the local voice. "
                "Add it to /etc/hark/env (or the environment) to use the Realtime API."
            )
        status = _run_async(app.run(settings, secrets, args.trace))
        _exit_now(status)
    if args.command == "check":
        from daemon.cli.check import run_checks

        return _run_async(run_checks(settings, secrets))
    if args.command == "devices":
        from daemon.audio.devices import format_devices

        print(format_devices())
        return 0
    if args.command == "demo":
        from daemon.cli.demo import run_demo

        return _run_async(run_demo(settings, secrets, args.text, args.output, args.trace))
    if args.command == "say":
        from daemon.cli.demo import say

        return _run_async(say(settings, args.text))
    raise AssertionError(args.command)


def _exit_now(status: int) -> NoReturn:
    """End `hark run` without the interpreter's teardown. Everything is closed by now (audio, sessions, MQTT
    `offline`, the trace, the household's choices on disk); finalizing onnxruntime and Piper objects module
    by module takes seconds on a busy Pi, and systemd's stop timeout should not wait for that."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _run_async(coro: object) -> int:
    try:
        return int(asyncio.run(coro))  # type: ignore[arg-type]
    except Exception as e:
        from daemon.config.models import ModelError

        if isinstance(e, ModelError):
            log.error("%s", e)
            return 1
        raise
