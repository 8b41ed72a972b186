"""tools / tool_choice over the real server for a chat template that defines tool calls: the default
SmolLM2 weights served under its own template plus the `<tool_call>` marker (Hermes/Qwen2.5 style),
so that the server offers the tools, enforces tool_choice required or named by constrained
decoding, and returns the calls in message.tool_calls and as streamed deltas, as OpenAI does. (The
unchanged SmolLM2 template defines none: test_openai_surface.py checks that tools are refused.)"""
import json

import openai
import pytest

import gguf_file
from test_server import MODEL, client, serve

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                   "properties": {"city": {"type": "string", "maxLength": 20}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {}, "additionalProperties": False}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "smollm2-hermes-tools.gguf"
    template = gguf_file.chat_template(MODEL) + "{# <tool_call> #}"
    gguf_file.with_chat_template(MODEL, model, template)
    assert gguf_file.tokens(model) == gguf_file.tokens(MODEL)
    yield from serve(tmp_path_factory, model)


def ask(server, max_tokens=60, **extra):
    return client(server).chat.completions.create(
        model="smollm2-hermes-tools", temperature=0, max_tokens=max_tokens,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}], **extra)


def test_required_tool_choice_returns_a_valid_call(server):
    # One call (parallel_tool_calls false): a 135M model would otherwise go on calling until max_tokens.
    r = ask(server, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id
    assert calls[0].function.name in ("get_weather", "get_time")
    args = json.loads(calls[0].function.arguments)
    if calls[0].function.name == "get_weather":
        assert set(args) == {"city"} and isinstance(args["city"], str) and len(args["city"]) <= 20


def test_a_named_tool_choice_calls_that_tool(server):
    r = ask(server, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = r.choices[0].message.tool_calls
    assert calls, r.choices[0]
    assert [c.function.name for c in calls] == ["get_time"]
    assert json.loads(calls[0].function.arguments) == {}


def test_parallel_calls_are_each_parsed(server):
    r = ask(server, tools=[WEATHER], tool_choice="required", max_tokens=120)
    calls = r.choices[0].message.tool_calls
    assert len(calls) >= 2, r.choices[0]  # this model keeps calling while the grammar lets it
    assert len({c.id for c in calls}) == len(calls)
    for c in calls:
        assert c.function.name == "get_weather" and set(json.loads(c.function.arguments)) == {"city"}


def test_streamed_deltas_add_up_to_the_same_call(server):
    one = {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False}
    whole = ask(server, **one).choices[0].message.tool_calls[0]
    name, arguments, ids, finish = None, "", set(), None
    for chunk in ask(server, stream=True, **one):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for call in delta.tool_calls or []:
            assert call.index == 0
            if call.id:
                ids.add(call.id)
                assert call.type == "function"
                name = call.function.name
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert len(ids) == 1 and name == whole.function.name == "get_weather"
    assert arguments == whole.function.arguments
    assert finish == "tool_calls"


def test_the_tools_reach_the_prompt_and_past_calls_render(server):
    # Offered with tool_choice auto, the tools are in the prompt: it has more tokens than without.
    plain = ask(server).usage.prompt_tokens
    offered = ask(server, tools=[WEATHER], tool_choice="auto").usage.prompt_tokens
    assert offered > plain + 20
    # A past call and its result are part of the conversation.
    r = client(server).chat.completions.create(model="smollm2-hermes-tools", temperature=0, max_tokens=8, messages=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c0", "content": "sunny, 21 C"}], tools=[WEATHER])
    assert r.usage.prompt_tokens > offered


def test_unknown_named_tool_and_bad_tools_are_400s(server):
    with pytest.raises(openai.BadRequestError) as e:
        ask(server, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert e.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as e:
        ask(server, tools=[{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "patternProperties": {"a": {}}}}}], tool_choice="required")
    assert e.value.body["param"] == "tools"
