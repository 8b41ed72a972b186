"""The OpenAI surface against the real server: README.md's request-field table walked row by row (each
implemented or ignored field accepted, each refused one a 400 naming it, unknown ones too), and each
implemented parameter shown to have its effect, with the official `openai` package where the route is
OpenAI's (logit_bias, echo, structured outputs, guided decoding, tools).

Shares test_server.py's server fixture (a server of its own for this module)."""
import json
import re

import httpx
import openai
import pytest

import gguf_file

from test_server import MODEL, ROOT, client, server  # noqa: F401  (server is a fixture)

ROUTES = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "chat_qos": "/v1/chat/completions_qos",
    "completions_qos": "/v1/completions_qos",
    "interactive_qos": "/v1/chat/interactive_qos",
}
BASE = {
    "chat": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    "completions": {"prompt": "Hi", "max_tokens": 2},
    "chat_qos": {"messages": "Hi", "user_id": "user_id4", "max_tokens": 2},
    "completions_qos": {"prompt": "Hi", "user_id": "user_id4", "max_tokens": 2},
    "interactive_qos": {"prompt": "Hi", "user_id": "user_id4", "request_output_len": 2},
}
# Implemented, but only for models whose chat template defines tool calls: the default SmolLM2's
# does not, so the server must refuse them for it, naming `tools`.
TOOL_FIELDS = {"tools", "tool_choice", "parallel_tool_calls"}


def readme_fields():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- request-fields:begin -->", 1)[1].split("<!-- request-fields:end -->", 1)[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        m = re.fullmatch(r"\| `([^`]+)` \| ([^|]+) \| (\w+) \| `(.*?)` \| (.*) \|", line)
        assert m, f"unparsable README row: {line}"
        name, routes, status, example, _ = m.groups()
        example = json.loads(example.replace("\\|", "|").replace("$MODEL", MODEL.stem))
        assert name in example, f"the example of {name} does not set it"
        rows.append((name, [r.strip() for r in routes.split(",")], status, example))
    return rows


def post(server, route, body, key):
    """One request as raw HTTP: (status, parsed JSON body or the raw text, e.g. an SSE stream)."""
    r = httpx.post(server["url"] + ROUTES[route], json=body, verify=False, timeout=120,
                   headers={"Authorization": f"Bearer {server['keys'][key]}"})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def send_openai(server, route, example):
    """The example through the openai package (the chat and completions routes)."""
    c = client(server)
    body = {**BASE[route], **example}
    stream = bool(body.pop("stream", False))
    model = body.pop("model", MODEL.stem)
    create = c.chat.completions.create if route == "chat" else c.completions.create
    first = {"messages": body.pop("messages")} if route == "chat" else {"prompt": body.pop("prompt")}
    result = create(model=model, stream=stream, extra_body=body, **first)
    if stream:
        return list(result)
    return result


def test_readme_table_walked_against_the_server(server):
    rows = readme_fields()
    assert len(rows) > 40
    seen = set()
    for name, routes, status, example in rows:
        for route in routes:
            seen.add((name, route))
            where = f"{name} on {route} ({status})"
            if route in ("chat", "completions"):
                if status == "refused" or name in TOOL_FIELDS:
                    with pytest.raises(openai.BadRequestError) as e:
                        send_openai(server, route, example)
                    want = "tools" if name in TOOL_FIELDS else name
                    assert e.value.body["param"] == want, where
                    if status == "refused":
                        assert e.value.body["code"] == "unsupported_parameter", where
                    else:
                        assert "chat template" in e.value.body["message"], where
                else:
                    assert send_openai(server, route, example), where
                continue
            status_code, body = post(server, route, {**BASE[route], **example}, "saas")
            if status == "refused" or name in TOOL_FIELDS:
                assert status_code == 400, (where, body)
                want = "tools" if name in TOOL_FIELDS else name
                assert body["error"]["param"] == want, (where, body)
            else:
                assert status_code == 200, (where, body)
    # Every route has its rows: the three LMDeploy bodies' own fields among them.
    for field, route in [("session_id", "interactive_qos"), ("interactive_mode", "interactive_qos"),
                         ("request_output_len", "interactive_qos"), ("stop", "interactive_qos"),
                         ("user_id", "chat_qos"), ("ignore_eos", "completions_qos"),
                         ("skip_special_tokens", "interactive_qos"), ("echo", "completions")]:
        assert (field, route) in seen, (field, route)


def test_unknown_and_misplaced_fields_are_refused_by_name(server):
    with pytest.raises(openai.BadRequestError) as e:
        client(server).chat.completions.create(model=MODEL.stem, max_tokens=2, extra_body={"temprature": 0.1},
                                               messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["param"] == "temprature" and e.value.body["code"] == "unknown_parameter"
    with pytest.raises(openai.BadRequestError) as e:  # echo is a completions field
        client(server).chat.completions.create(model=MODEL.stem, max_tokens=2, extra_body={"echo": True},
                                               messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["param"] == "echo"
    status, body = post(server, "interactive_qos", {**BASE["interactive_qos"], "n": 2}, "saas")
    assert status == 400 and body["error"]["param"] == "n" and body["error"]["code"] == "unknown_parameter"


def test_null_and_neutral_values_of_refused_fields_pass(server):
    r = client(server).completions.create(model=MODEL.stem, prompt="Hi", max_tokens=2,
                                          extra_body={"best_of": 1, "suffix": None})
    assert r.choices[0].text is not None
    r = client(server).chat.completions.create(model=MODEL.stem, max_tokens=2, modalities=["text"],
                                               messages=[{"role": "user", "content": "Hi"}],
                                               extra_body={"audio": None, "functions": None})
    assert r.choices[0].message.content is not None


def test_interactive_stop_true_ends_the_session(server):
    def turn(extra):
        body = {"prompt": "My name is Ada.", "session_id": 21, "interactive_mode": True, "request_output_len": 3,
                "temperature": 0, "user_id": "user_id4", **extra}
        status, text = post(server, "interactive_qos", body, "saas")
        assert status == 200, text
        return text
    turn({})
    assert turn({})["history_tokens"] > 0
    ended = turn({"stop": True})
    assert ended["text"] == "" and ended["tokens"] == 0 and ended["finish_reason"] == "stop"
    assert turn({})["history_tokens"] == 0  # a fresh session



# --- each implemented parameter has its effect --------------------------------------------------

def byte_level(text):
    """Text as GPT-2 byte-level BPE writes it in its vocabulary (a space is 'Ġ')."""
    shown = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in shown:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return "".join(table[b] for b in text.encode())


PROMPT = "The capital of France is"


def test_a_bias_of_minus_100_on_the_greedy_token_changes_it(server):
    c = client(server)
    vocab = {t: i for i, t in enumerate(gguf_file.tokens(MODEL))}
    def first(**extra):
        r = c.completions.create(model=MODEL.stem, prompt=PROMPT, max_tokens=1, temperature=0, **extra)
        return r.choices[0].text
    greedy = first()
    assert byte_level(greedy) in vocab, greedy
    banned = first(logit_bias={str(vocab[byte_level(greedy)]): -100})
    assert banned != greedy
    # The ban holds at every step of a longer answer, on the chat route too.
    answer = c.chat.completions.create(model=MODEL.stem, max_tokens=6, temperature=0,
                                       messages=[{"role": "user", "content": PROMPT}]).choices[0].message.content
    word = answer.split()[0]
    if byte_level(word) in vocab:
        without = c.chat.completions.create(model=MODEL.stem, max_tokens=6, temperature=0,
                                            logit_bias={str(vocab[byte_level(word)]): -100},
                                            messages=[{"role": "user", "content": PROMPT}]).choices[0].message.content
        assert without != answer
    # +100 on a token far from greedy makes it the answer.
    forced = vocab[byte_level(" banana")]
    assert first(logit_bias={str(forced): 100}) == " banana"


def test_logit_bias_out_of_range_or_not_a_token_is_a_400_naming_it(server):
    for bias in ({"5": 101}, {"-1": 1}, {"99999999": 1}, {"x": 1}):
        with pytest.raises(openai.BadRequestError) as e:
            client(server).completions.create(model=MODEL.stem, prompt="Hi", max_tokens=1, logit_bias=bias)
        assert e.value.body["param"] == "logit_bias", bias


def test_echo_returns_the_prompt_and_its_logprobs(server):
    c = client(server)
    plain = c.completions.create(model=MODEL.stem, prompt=PROMPT, max_tokens=3, temperature=0)
    echoed = c.completions.create(model=MODEL.stem, prompt=PROMPT, max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    scored = c.completions.create(model=MODEL.stem, prompt=PROMPT, max_tokens=3, temperature=0, echo=True, logprobs=1)
    lp = scored.choices[0].logprobs
    assert scored.choices[0].text == echoed.choices[0].text
    assert "".join(lp.tokens) == scored.choices[0].text
    n_prompt = scored.usage.prompt_tokens
    assert len(lp.tokens) == n_prompt + scored.usage.completion_tokens
    assert lp.token_logprobs[0] is None  # the first prompt token has nothing before it
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset[:2] == [0, len(lp.tokens[0])]
    # A generated (greedy) token is its own top alternative; so is its logprob.
    for i in range(n_prompt, len(lp.tokens)):
        assert max(lp.top_logprobs[i].values()) == pytest.approx(lp.token_logprobs[i], abs=1e-4)
    # Streaming echoes the prompt first too.
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model=MODEL.stem, prompt=PROMPT, max_tokens=3, temperature=0, echo=True, stream=True))
    assert streamed == echoed.choices[0].text


def chat(server, max_tokens=80, **extra):
    r = client(server).chat.completions.create(model=MODEL.stem, temperature=0, max_tokens=max_tokens, **extra)
    return r.choices[0]


def test_json_object_mode_output_parses(server):
    # A 135M model asked to describe something in JSON rambles past any max_tokens (the answer is
    # then cut, as OpenAI's is): ask for something short so that the object closes.
    choice = chat(server, response_format={"type": "json_object"},
                  messages=[{"role": "user", "content": 'Return {"ok": true} as JSON.'}])
    assert choice.finish_reason == "stop", choice
    assert isinstance(json.loads(choice.message.content), dict)
    # Prose unconstrained, an object under json_object.
    prose = chat(server, max_tokens=8, messages=[{"role": "user", "content": "Say hello."}]).message.content
    constrained = chat(server, max_tokens=8, response_format={"type": "json_object"},
                       messages=[{"role": "user", "content": "Say hello."}]).message.content
    assert not prose.lstrip().startswith("{") and constrained.startswith("{"), (prose, constrained)


def test_a_json_schemas_required_fields_are_present(server):
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "colour"],
              "properties": {"name": {"type": "string", "maxLength": 20},
                             "age": {"type": "integer", "minimum": 0, "maximum": 30},
                             "colour": {"enum": ["black", "white", "ginger"]}}}
    for strict in (True, False):
        choice = chat(server, messages=[{"role": "user", "content": "Describe a cat."}],
                      response_format={"type": "json_schema",
                                       "json_schema": {"name": "cat", "schema": schema, "strict": strict}})
        assert choice.finish_reason == "stop", choice
        cat = json.loads(choice.message.content)
        assert set(cat) == {"name", "age", "colour"}, cat
        assert isinstance(cat["name"], str) and len(cat["name"]) <= 20
        assert isinstance(cat["age"], int) and 0 <= cat["age"] <= 30
        assert cat["colour"] in ("black", "white", "ginger")
    # Through completions and vLLM's guided_json the same.
    r = client(server).completions.create(model=MODEL.stem, prompt="A cat as JSON:", max_tokens=80, temperature=0,
                                          extra_body={"guided_json": schema})
    assert set(json.loads(r.choices[0].text)) == {"name", "age", "colour"}


def test_strict_mode_and_unsupported_schema_features_are_400s_naming_them(server):
    def refused(schema, strict=False):
        with pytest.raises(openai.BadRequestError) as e:
            chat(server, messages=[{"role": "user", "content": "Hi"}],
                 response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": strict}})
        assert e.value.body["param"] == "response_format"
        return e.value.body["message"]
    assert "patternProperties" in refused({"type": "object", "patternProperties": {"^a": {"type": "string"}}})
    assert "not" in refused({"not": {"type": "string"}})
    # strict: every property required and additionalProperties false.
    assert "required" in refused({"type": "object", "properties": {"a": {"type": "string"}},
                                  "additionalProperties": False}, strict=True)


def test_guided_regex_and_guided_choice(server):
    r = client(server).completions.create(model=MODEL.stem, prompt="The year the war ended:", max_tokens=10,
                                          temperature=0, extra_body={"guided_regex": "[12][0-9]{3}"})
    assert re.fullmatch("[12][0-9]{3}", r.choices[0].text), r.choices[0].text
    choice = chat(server, messages=[{"role": "user", "content": "Is the sky green?"}],
                  extra_body={"guided_choice": ["yes", "no", "sometimes"]})
    assert choice.message.content in ("yes", "no", "sometimes")
    with pytest.raises(openai.BadRequestError) as e:
        chat(server, messages=[{"role": "user", "content": "Hi"}], extra_body={"guided_regex": "(a"})
    assert e.value.body["param"] == "guided_regex"


def test_constrained_output_streams_the_same(server):
    body = dict(messages=[{"role": "user", "content": "Describe a dog as JSON."}],
                response_format={"type": "json_object"})
    whole = chat(server, **body).message.content
    pieces = client(server).chat.completions.create(model=MODEL.stem, temperature=0, max_tokens=80, stream=True, **body)
    assert "".join(ch.choices[0].delta.content or "" for ch in pieces if ch.choices) == whole


def test_tools_are_refused_naming_tools_for_a_template_without_tool_calls(server):
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
    for choice in ("auto", "required", {"type": "function", "function": {"name": "weather"}}):
        with pytest.raises(openai.BadRequestError) as e:
            chat(server, messages=[{"role": "user", "content": "Weather?"}], tools=[tool], tool_choice=choice)
        assert e.value.body["param"] == "tools" and e.value.body["code"] == "unsupported_parameter"
    # tool_choice none offers no tools: nothing the template must render.
    assert chat(server, messages=[{"role": "user", "content": "Hi"}], tools=[tool], tool_choice="none",
                max_tokens=2).message.content is not None
    # Nor can it show the model a past call.
    with pytest.raises(openai.BadRequestError) as e:
        chat(server, max_tokens=2, messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c0", "content": "sunny"}])
    assert e.value.body["param"] == "messages" and e.value.body["code"] == "unsupported_parameter"
