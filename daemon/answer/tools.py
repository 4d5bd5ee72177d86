"""Function tools the model may call: definitions for `session.update`, and calls that never raise.

Why never raise: a tool error must reach the model as readable output ("unknown tool x", "argument y
missing"), so it can tell the user, instead of breaking the turn. The real actions (MQTT) plug in with
`register(name, handler)`; a built-in `get_time` is always there so the path is exercised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.config.settings import ToolSettings

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""`handler(call_id, arguments) -> output`: a str is passed through, anything else is sent as JSON."""

GET_TIME = ToolSettings(
    name="get_time",
    description="Local date, time and time zone of the speaker. Use it for any time or date question.",
    parameters={"type": "object", "properties": {}},
    timeout_s=1.0,
)


@dataclass(frozen=True, slots=True)
class _Tool:
    spec: ToolSettings
    handler: Handler | None


async def get_time(call_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The built-in tool: the device's local time (the model itself has no clock)."""
    now = dt.datetime.now().astimezone()
    return {
        "time": now.strftime("%H:%M"),
        "date": now.date().isoformat(),
        "weekday": now.strftime("%A"),
        "timezone": now.tzname() or "",
        "utc_offset": now.strftime("%z"),
        "iso": now.isoformat(timespec="seconds"),
    }


class ToolRegistry:
    """Tools from `Settings.tools` plus `get_time` (a configured tool of the same name replaces it)."""

    def __init__(self, tools: Sequence[ToolSettings] = (), *, builtin_time: bool = True) -> None:
        self._tools: dict[str, _Tool] = {}
        if builtin_time:
            self._tools[GET_TIME.name] = _Tool(GET_TIME, get_time)
        for spec in tools:
            if spec.name in self._tools:
                log.info("tool %s from the config replaces the built-in one", spec.name)
            self._tools[spec.name] = _Tool(spec, None)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def register(self, name: str, handler: Handler) -> None:
        """Attach the action for a configured tool (e.g. the MQTT bridge's publish-and-wait)."""
        if name not in self._tools:
            raise KeyError(
                f"tool {name!r} is not configured; add a [[tools]] entry with name = {name!r} "
                f"(configured: {', '.join(self._tools) or 'none'})"
            )
        self._tools[name] = _Tool(self._tools[name].spec, handler)

    def definitions(self) -> list[dict[str, Any]]:
        """GA function tools for `session.tools`."""
        return [
            {
                "type": "function",
                "name": t.spec.name,
                "description": t.spec.description,
                "parameters": t.spec.parameters,
            }
            for t in self._tools.values()
        ]

    async def call(self, name: str, call_id: str, arguments_json: str) -> str:
        """Run a tool; the returned string goes back as `function_call_output` (errors included)."""
        tool = self._tools.get(name)
        if tool is None:
            log.warning("model called unknown tool %r (known: %s)", name, ", ".join(self._tools))
            return _error(f"unknown tool {name!r}; available tools: {', '.join(self._tools) or 'none'}")
        try:
            args = json.loads(arguments_json or "{}")
        except ValueError as e:
            return _error(f"arguments for {name} are not valid JSON ({e}); expected a JSON object")
        if not isinstance(args, dict):
            return _error(f"arguments for {name} must be a JSON object, got {type(args).__name__}")
        missing = [k for k in tool.spec.parameters.get("required", []) if k not in args]
        if missing:
            return _error(f"{name} is missing required argument(s): {', '.join(missing)}")
        if tool.handler is None:
            log.warning("tool %s was called but no action is attached (is MQTT configured?)", name)
            return _error(f"tool {name} is not connected to any action on this device")
        return await self._run(tool, call_id, args)

    async def _run(self, tool: _Tool, call_id: str, args: dict[str, Any]) -> str:
        assert tool.handler is not None
        name = tool.spec.name
        try:
            result = await asyncio.wait_for(tool.handler(call_id, args), tool.spec.timeout_s)
        except asyncio.TimeoutError:
            log.warning("tool %s gave no result within %.1f s (tools.timeout_s)", name, tool.spec.timeout_s)
            return _error(f"{name} did not answer within {tool.spec.timeout_s:g} s")
        except Exception as e:  # a broken action must not break the conversation
            log.exception("tool %s failed", name)
            return _error(f"{name} failed: {type(e).__name__}: {e}")
        if isinstance(result, str):
            return result
        return json.dumps(result, default=str, ensure_ascii=False)


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)
