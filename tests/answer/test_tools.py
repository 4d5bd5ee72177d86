"""ToolRegistry: GA definitions, the built-in clock, and errors the model can read instead of exceptions."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from daemon.answer.tools import ToolRegistry
from daemon.config.loader import from_dict
from daemon.config.settings import ToolSettings

LIGHT = ToolSettings(
    name="set_light",
    description="Switch a light",
    parameters={
        "type": "object",
        "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
        "required": ["room", "on"],
    },
    timeout_s=0.2,
)


def error_of(output: str) -> str:
    body = json.loads(output)
    assert set(body) == {"error"}, body
    return str(body["error"])


def test_definitions_are_ga_function_tools() -> None:
    settings = from_dict({"tools": [LIGHT.model_dump()]})
    registry = ToolRegistry(settings.tools)
    defs = registry.definitions()
    assert [d["name"] for d in defs] == ["get_time", "set_light"]
    for d in defs:
        assert set(d) == {"type", "name", "description", "parameters"} and d["type"] == "function"
        assert d["parameters"]["type"] == "object"
    assert ToolRegistry(builtin_time=False).definitions() == []


async def test_get_time_tells_local_time() -> None:
    out = json.loads(await ToolRegistry().call("get_time", "call_1", "{}"))
    now = dt.datetime.now().astimezone()
    assert out["date"] == now.date().isoformat()
    assert abs(dt.datetime.fromisoformat(out["iso"]) - now) < dt.timedelta(seconds=5)
    assert out["timezone"] and out["weekday"] == now.strftime("%A")


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("open_door", "{}", "unknown tool 'open_door'"),
        ("set_light", "{room: kitchen}", "not valid JSON"),
        ("set_light", "[1, 2]", "must be a JSON object"),
        ("set_light", '{"room": "kitchen"}', "missing required argument(s): on"),
        ("set_light", '{"room": "kitchen", "on": true}', "not connected to any action"),
    ],
)
async def test_bad_calls_answer_the_model_with_an_error(name: str, args: str, expected: str) -> None:
    registry = ToolRegistry([LIGHT])
    assert expected in error_of(await registry.call(name, "call_1", args))


async def test_registered_handler_gets_arguments_and_output_is_json() -> None:
    registry = ToolRegistry([LIGHT])
    seen: list[tuple[str, dict[str, Any]]] = []

    async def handler(call_id: str, args: dict[str, Any]) -> dict[str, Any]:
        seen.append((call_id, args))
        return {"ok": True}

    registry.register("set_light", handler)
    out = await registry.call("set_light", "call_9", '{"room": "hall", "on": false}')
    assert json.loads(out) == {"ok": True}
    assert seen == [("call_9", {"room": "hall", "on": False})]

    async def text_handler(call_id: str, args: dict[str, Any]) -> str:
        return "done"

    registry.register("set_light", text_handler)
    assert await registry.call("set_light", "c", '{"room": "hall", "on": true}') == "done"


async def test_failing_or_slow_handler_never_raises() -> None:
    registry = ToolRegistry([LIGHT])

    async def broken(call_id: str, args: dict[str, Any]) -> str:
        raise RuntimeError("bulb exploded")

    registry.register("set_light", broken)
    assert "bulb exploded" in error_of(await registry.call("set_light", "c", '{"room": "a", "on": true}'))

    async def slow(call_id: str, args: dict[str, Any]) -> str:
        await asyncio.sleep(5)
        return "late"

    registry.register("set_light", slow)
    out = await asyncio.wait_for(registry.call("set_light", "c", '{"room": "a", "on": true}'), 3)
    assert "did not answer within 0.2 s" in error_of(out)


def test_register_unknown_tool_names_the_fix() -> None:
    with pytest.raises(KeyError, match=r"add a \[\[tools\]\] entry"):
        ToolRegistry().register("set_light", lambda c, a: asyncio.sleep(0))


async def test_config_tool_replaces_builtin_get_time() -> None:
    custom = ToolSettings(name="get_time", description="Time on the ship")
    registry = ToolRegistry([custom])
    assert [d["description"] for d in registry.definitions()] == ["Time on the ship"]
    assert "not connected" in error_of(await registry.call("get_time", "c", ""))
