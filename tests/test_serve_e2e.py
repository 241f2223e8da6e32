"""`asls serve` with the embedded model, driven by the real `openai` client as a user's tools would:
two users chat (streaming and not), one edits each answer to its whole sentences and a follow-up question,
ends the session, the update trains in the background, and the next answer's header names the new adapter;
then both users' streams run at once and each answer equals the one that user gets alone.

The edits teach something the gate lets through: a user who cut every answer to its first 20 words taught the
embedded model to stop lists early ("List four animals that live in the ocean." answered with fewer), and
the gate rightly turned that adapter down."""

from __future__ import annotations

import threading

import pytest

from serve_helpers import start_server

from asls_mlx.profiling.unfinished import drop_unfinished

pytestmark = pytest.mark.e2e
openai = pytest.importorskip("openai")

PROMPTS = ["Tell me about the moon.", "Tell me about honey bees.", "Tell me about volcanoes.", "Tell me about coffee.",
           "Tell me about chess."]


def with_follow_up(text: str) -> str:
    """The user's edit: the answer's whole sentences and a question to go on with."""
    return drop_unfinished(text) + "\n\nWant me to go deeper on any part of this?"


def _stream_text(client, user, messages, **kw):
    chunks = list(client.chat.completions.create(model="asls", user=user, messages=messages, stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip(), chunks


def test_two_users_learning_through_the_openai_client(default_model_dir, tmp_path):
    server = start_server(tmp_path / "home", str(default_model_dir), "--quiet", "--train-budget", "600")
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
        conversation, changed = [], 0
        for i, prompt in enumerate(PROMPTS):  # one conversation, alternately streamed and not
            conversation.append({"role": "user", "content": prompt})
            if i % 2:
                text, chunks = _stream_text(client, "brief", conversation, max_tokens=80, temperature=0)
                cid, version = chunks[0].id, chunks[0].asls["adapter_version"]
            else:
                raw = client.chat.completions.with_raw_response.create(model="asls", user="brief", messages=conversation,
                                                                       max_tokens=80, temperature=0)
                reply = raw.parse()
                text, cid, version = reply.choices[0].message.content, reply.id, int(raw.headers["x-asls-adapter-version"])
            assert text and version == 0
            conversation.append({"role": "assistant", "content": text})
            changed += with_follow_up(text).strip() != text.strip()
            status, body, _ = server.request("POST", "/asls/feedback", {"user": "brief", "completion_id": cid, "kind": "edit",
                                                                        "text": with_follow_up(text)})
            assert status == 200, body
        other, _ = _stream_text(client, "other", [{"role": "user", "content": "Tell me about rivers."}], max_tokens=24)
        assert other
        ended = server.request("POST", "/asls/sessions/end", {"user": "brief"})[1]
        assert ended["ended"] and ended["pairs_mined"] >= changed >= 3 and ended["training"] == "background", ended
        status = server.wait_for_training("brief", timeout=900)
        assert status["training"]["committed"], status
        probe = [{"role": "user", "content": "Tell me about rainbows."}]
        raw = client.chat.completions.with_raw_response.create(model="asls", user="brief", messages=probe, max_tokens=24, temperature=0)
        assert raw.headers["x-asls-adapter-version"] == "1" and raw.parse().asls["adapter_version"] == 1
        alone = {"brief": raw.parse().choices[0].message.content}
        alone["other"] = client.chat.completions.create(model="asls", user="other", messages=probe, max_tokens=24,
                                                        temperature=0).choices[0].message.content
        assert alone["brief"] != alone["other"]  # the adapters differ, so mixing them would show
        together: dict[str, list[str]] = {"brief": [], "other": []}

        def ask(user):
            together[user].append(_stream_text(client, user, probe, max_tokens=24, temperature=0)[0])

        threads = [threading.Thread(target=ask, args=(u,)) for u in ("brief", "other", "brief", "other")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert together == {u: [alone[u]] * 2 for u in alone}
    finally:
        assert server.stop() == 0, server.log.read_text()
