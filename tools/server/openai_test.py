"""`lade serve` driven by the official `openai` Python client: chat, completion, streaming,
the lookahead extension and error mapping. Exits non-zero on the first failure.

Run through tools/server/openai_test.sh (it makes the virtual environment)."""

import argparse
import sys

import openai
from openai import OpenAI

from serverproc import LadeServer

KEY = "sk-lade-openai-test"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/lade")
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    args = ["--api-key", KEY, "--model-name", "smol", "--max-concurrent", "2"]
    if a.model:
        args += ["--model", a.model]
    print(f"openai {openai.__version__}")
    with LadeServer(a.bin, args) as server:
        run(server)
        code = server.stop()
        check(code == 0, f"lade serve exits 0 on SIGTERM (got {code})")
    print("openai client test: all checks passed")


def run(server):
    client = OpenAI(base_url=server.base + "/v1", api_key=KEY, max_retries=0, timeout=300)

    ids = [m.id for m in client.models.list()]
    check(ids == ["smol"], f"models.list() = {ids}")

    msgs = [{"role": "system", "content": "You are brief."},
            {"role": "user", "content": "Write a haiku about the sea."}]
    chat = client.chat.completions.create(model="smol", messages=msgs, max_tokens=24, temperature=0)
    text = chat.choices[0].message.content
    check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant",
          "chat completion object")
    check(bool(text), f"chat text: {text!r}")
    check(chat.choices[0].finish_reason in ("stop", "length"), "chat finish_reason")
    u = chat.usage
    check(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 24
          and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"chat usage {u}")
    la = (u.model_extra or {}).get("lookahead")
    # Whatever `auto` picked (plain decoding, or lookahead where rows look cheap): every step
    # commits at least one token, compression is tokens over steps, and a plain step commits
    # exactly one.
    check(la is not None and 1 <= la["steps"] <= la["generated_tokens"]
          and abs(la["compression"] * la["steps"] - la["generated_tokens"]) < 1e-6 * la["steps"]
          and (la["decoder"] != "plain" or la["steps"] == la["generated_tokens"]),
          f"usage.lookahead {la}")

    # Streaming chat with usage: same text as non-streaming.
    stream = client.chat.completions.create(model="smol", messages=msgs, max_tokens=24,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    check("".join(parts) == text, "streamed chat text equals the non-streamed text")
    check(finish == chat.choices[0].finish_reason, f"streamed finish_reason {finish}")
    check(usage is not None and usage.completion_tokens == u.completion_tokens,
          f"streamed usage {usage}")

    # Lookahead extension through extra_body: greedy lookahead gives the same text.
    la_chat = client.chat.completions.create(model="smol", messages=msgs, max_tokens=24,
                                             temperature=0,
                                             extra_body={"lookahead": {"w": 4, "n": 3, "g": 4}})
    check(la_chat.choices[0].message.content == text, "lookahead {w:4,n:3,g:4} gives the same text")
    check(la_chat.usage.model_extra["lookahead"]["decoder"] == "lookahead(4,3,4)",
          "usage names the lookahead decoder")

    # Completions, plain and streamed.
    comp = client.completions.create(model="smol", prompt="The capital of France is",
                                     max_tokens=8, temperature=0)
    ctext = comp.choices[0].text
    check(comp.object == "text_completion" and bool(ctext), f"completion text {ctext!r}")
    check(comp.usage.completion_tokens > 0, "completion usage")
    parts = []
    for chunk in client.completions.create(model="smol", prompt="The capital of France is",
                                           max_tokens=8, temperature=0, stream=True):
        parts.extend(c.text for c in chunk.choices)
    check("".join(parts) == ctext, "streamed completion equals the non-streamed one")

    # Seeded sampling is reproducible.
    a, b = (client.chat.completions.create(model="smol", messages=msgs, max_tokens=12,
                                           temperature=0.9, top_p=0.95, seed=42)
            .choices[0].message.content for _ in range(2))
    check(a == b, "same seed, same text")

    # Errors map onto the client's exception classes.
    try:
        client.chat.completions.create(model="smol", messages=msgs, n=2)
        check(False, "n=2 is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body.get("param") == "n", "n=2 -> BadRequestError")
    try:
        client.chat.completions.create(model="gpt-4o", messages=msgs)
        check(False, "an unknown model is refused")
    except openai.NotFoundError as e:
        check(e.status_code == 404, "unknown model -> NotFoundError")
    try:
        client.chat.completions.create(model="smol", messages=[])
        check(False, "empty messages are refused")
    except openai.BadRequestError:
        check(True, "empty messages -> BadRequestError")
    bad = OpenAI(base_url=server.base + "/v1", api_key="sk-wrong", max_retries=0)
    try:
        bad.models.list()
        check(False, "a wrong key is refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "wrong key -> AuthenticationError")

    # Still serving.
    again = client.chat.completions.create(model="smol", messages=msgs, max_tokens=24, temperature=0)
    check(again.choices[0].message.content == text, "served again after the errors")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
