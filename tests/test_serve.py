"""`asls serve` on the tiny model, through the real `openai` client and plain HTTP: the wire format,
what the history stores, feedback and session ends, bad requests, keys, and users kept apart."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from asls_mlx import ASLSError, Assistant
from serve_helpers import start_server

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("serve_home")
    srv = start_server(home, str(tiny_model_dir), "--quiet", "--train-budget", "20")
    srv.home = home
    yield srv
    assert srv.stop() == 0, srv.log.read_text()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


def _ask(client, user, messages, **kw):
    raw = client.chat.completions.with_raw_response.create(model="asls", user=user, messages=messages, **{"max_tokens": 8, **kw})
    return raw.parse(), raw.headers


def _stored(server, monkeypatch, user):
    """The user's history as the store has it (the server holds the chat lock: read without it)."""
    monkeypatch.setenv("ASLS_HOME", str(server.home))
    a = Assistant(user=user, exclusive=False)
    try:
        return a.history(), {m.id: [f.kind for f in a.store.feedback(message_id=m.id)] for m in a.history()}, a.store.sessions(a.user.id)
    finally:
        a.close()


def test_models_chat_and_stream_in_openai_format(client):
    assert [m.id for m in client.models.list().data] == ["model"]
    hello = [{"role": "user", "content": "Hello there"}]
    whole, headers = _ask(client, "fmt1", hello)
    assert headers["x-asls-adapter-version"] == "0"
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert whole.choices[0].finish_reason in ("stop", "length") and whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens == 8 and whole.usage.total_tokens == whole.usage.prompt_tokens + 8
    assert whole.asls["user"] == "fmt1" and whole.asls["adapter_version"] == 0 and whole.asls["turn"] == "new"
    stream = client.chat.completions.create(model="asls", user="fmt2", messages=hello, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].asls["adapter_version"] == 0
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == whole.choices[0].message.content  # greedy: the same answer either way


def test_stop_sequences_end_the_stream_and_are_not_sent():
    from asls_mlx.conversation import _cut, _stop_at
    from asls_mlx.engine import GenerationChunk

    closed = []

    def chunks(texts):
        try:
            for t in texts:
                yield GenerationChunk(t, 0)
            yield GenerationChunk("", 0, finish_reason="length")
        finally:
            closed.append(True)

    out = list(_stop_at(chunks(["Hel", "lo, wo", "rld. E", "ND more"]), ("END",)))
    assert "".join(c.text for c in out) == "Hello, world. " and out[-1].finish_reason == "stop" and closed
    out = list(_stop_at(chunks(["a E", "N", "b"]), ("END",)))  # a partial match is held back, then sent
    assert "".join(c.text for c in out) == "a ENb" and out[-1].finish_reason == "length"
    assert _cut("one. END two", ("END", ".")) == "one" and _cut("x", ()) == "x"


def test_history_keeps_each_exchange_once_and_sees_regenerations_and_edits(client, server, monkeypatch):
    first = [{"role": "user", "content": "Tell me about owls."}]
    a1, _ = _ask(client, "hist", first)
    second = first + [{"role": "assistant", "content": a1.choices[0].message.content}, {"role": "user", "content": "shorter please"}]
    a2, _ = _ask(client, "hist", second)
    assert (a1.asls["turn"], a2.asls["turn"]) == ("new", "continue") and a2.asls["session_id"] == a1.asls["session_id"]
    again, _ = _ask(client, "hist", second, temperature=1.0, seed=3)  # the client's "regenerate" button
    assert again.asls["turn"] == "regenerate"
    edited = second + [{"role": "assistant", "content": "Owls hunt at night."}, {"role": "user", "content": "Thanks!"}]
    a3, _ = _ask(client, "hist", edited)
    assert a3.asls["turn"] == "edit" and a3.asls["session_id"] == a1.asls["session_id"]
    history, kinds, sessions = _stored(server, monkeypatch, "hist")
    assert [m.role for m in history] == ["user", "assistant"] * 3 and len(sessions) == 1
    assert [m.text for m in history if m.role == "user"] == ["Tell me about owls.", "shorter please", "Thanks!"]
    assert history[3].text == "Owls hunt at night." and history[3].content == again.choices[0].message.content
    assert "edit" in kinds[history[3].id]
    end = server.request("POST", "/asls/sessions/end", {"user": "hist"})[1]
    assert end["ended"] is True and end["training"] in ("background", "none")
    _, kinds, sessions = _stored(server, monkeypatch, "hist")
    assert all(s.processed for s in sessions)
    assert "correction" in kinds[history[1].id]  # "shorter please" corrected the first answer, as in the chat
    assert server.request("POST", "/asls/sessions/end", {"user": "hist"})[1]["ended"] is False


def test_feedback_goes_to_the_answer_its_completion_id_names(client, server, monkeypatch):
    r, _ = _ask(client, "fb", [{"role": "user", "content": "Name a colour."}])
    status, body, _ = server.request("POST", "/asls/feedback", {"user": "fb", "completion_id": r.id, "kind": "good"})
    assert status == 200 and body["message_id"] == r.asls["message_id"]
    status, body, _ = server.request("POST", "/asls/feedback", {"user": "fb", "kind": "edit", "text": "Blue."})
    assert status == 200
    history, kinds, _ = _stored(server, monkeypatch, "fb")
    assert kinds[r.asls["message_id"]] == ["thumbs_up", "edit"] and history[-1].text == "Blue."
    # the client still holds the original answer: continuing with it is no second edit (it would undo the first)
    later, _ = _ask(client, "fb", [{"role": "user", "content": "Name a colour."},
                                   {"role": "assistant", "content": r.choices[0].message.content}, {"role": "user", "content": "Another?"}])
    assert later.asls["turn"] == "continue" and later.asls["session_id"] == r.asls["session_id"]
    history, kinds, _ = _stored(server, monkeypatch, "fb")
    for bad, code in [({"user": "someone_else", "completion_id": r.id, "kind": "good"}, 404),
                      ({"user": "fb", "completion_id": "chatcmpl-nope", "kind": "good"}, 404),
                      ({"user": "fb", "kind": "love"}, 400), ({"user": "fb", "kind": "edit"}, 400)]:
        status, body, _ = server.request("POST", "/asls/feedback", bad)
        assert status == code and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert _stored(server, monkeypatch, "fb")[1] == kinds  # refused feedback wrote nothing
    assert kinds[r.asls["message_id"]] == ["thumbs_up", "edit"] and history[1].text == "Blue."


@pytest.mark.parametrize("body, field", [
    (None, None), ([1, 2], None), ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": True}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [""]}, "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "user": "a/b"}, "user"),
    ({"messages": [{"role": "user", "content": "x" * 100_001}]}, "messages"),
])
def test_bad_requests_are_400_with_a_reason_and_write_nothing(server, monkeypatch, body, field):
    payload = dict(body, user=body.get("user", "badreq")) if isinstance(body, dict) else body
    raw = b"{not json" if body is None else None
    status, answer, _ = server.request("POST", "/chat/completions", payload, raw=raw)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error", answer
    assert answer["error"]["param"] == field and "Traceback" not in answer["error"]["message"]
    monkeypatch.setenv("ASLS_HOME", str(server.home))
    a = Assistant(user="badreq", exclusive=False)
    assert a.history() == []
    a.close()


def test_a_body_over_the_limit_is_413_and_unknown_routes_404(server):
    status, answer, _ = server.request("POST", "/chat/completions", raw=b"x" * ((1 << 20) + 1))
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert server.request("GET", "/nothing")[0] == 404


def test_one_users_history_never_reaches_another_users_prompt(client):
    secret = [{"role": "user", "content": "My password is swordfish. Remember it."}]
    _ask(client, "alice", secret)
    probe = [{"role": "user", "content": "What is my password?"}]
    bob, _ = _ask(client, "bob", probe)
    carol, _ = _ask(client, "carol", probe)  # a user with no history at all
    assert bob.usage.prompt_tokens == carol.usage.prompt_tokens
    assert bob.choices[0].message.content == carol.choices[0].message.content


def test_a_host_off_loopback_needs_an_api_key(tiny_model_dir, tmp_path):
    from asls_mlx.serve import Server, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(ASLSError, match="--api-key"):
        Server(host="0.0.0.0")
    out = subprocess.run([sys.executable, "-m", "asls_mlx", "serve", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "--api-key" in out.stderr


def test_the_api_key_is_required_when_set(tiny_model_dir, tmp_path):
    srv = start_server(tmp_path / "keyed", str(tiny_model_dir), "--quiet", "--api-key", "s3cret")
    try:
        status, body, _ = srv.request("GET", "/models")
        assert status == 401 and body["error"]["type"] == "authentication_error"
        assert srv.request("GET", "/models", headers={"Authorization": "Bearer wrong"})[0] == 401
        keyed = openai.OpenAI(base_url=srv.url, api_key="s3cret", max_retries=0)
        assert keyed.models.list().data[0].id == "model"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url, api_key="nope", max_retries=0).models.list()
    finally:
        assert srv.stop() == 0


def test_learning_through_the_server_and_concurrent_users_keep_their_adapters(client, server):
    """Edits sent as feedback train the user's adapter in the background; the next answer says v1. Then
    two users' streams at once (one on v1, one on the base model) answer as each does alone."""
    for q, e in [("What is the capital of France?", "Paris is the capital."), ("How do I boil an egg?", "Boil it nine minutes."),
                 ("Explain photosynthesis to me", "Plants turn light into sugar."), ("Name a fruit that is red", "An apple is red."),
                 ("What is a good name for a cat?", "Try Milo, a classic.")]:
        r, _ = _ask(client, "learner", [{"role": "user", "content": q}])
        assert server.request("POST", "/asls/feedback", {"user": "learner", "completion_id": r.id, "kind": "edit", "text": e})[0] == 200
    assert server.request("POST", "/asls/sessions/end", {"user": "learner"})[1]["training"] == "background"
    status = server.wait_for_training("learner", timeout=300)
    assert status["training"]["committed"], status
    probe = [{"role": "user", "content": "Tell me a story about the sea."}]
    # temperature 0 throughout: the same conversation sent again is a regeneration, sampled unless told not to
    alone = {u: _ask(client, u, probe, max_tokens=12, temperature=0) for u in ("learner", "stranger")}
    assert alone["learner"][1]["x-asls-adapter-version"] == "1" and alone["stranger"][1]["x-asls-adapter-version"] == "0"
    together = {}

    def stream(user):
        chunks = list(client.chat.completions.create(model="asls", user=user, messages=probe, max_tokens=12, stream=True,
                                                             temperature=0))
        together[user] = ("".join(c.choices[0].delta.content or "" for c in chunks).strip(), chunks[0].asls["adapter_version"])

    threads = [threading.Thread(target=stream, args=(u,)) for u in ("learner", "stranger", "learner", "stranger")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert together == {u: (alone[u][0].choices[0].message.content, alone[u][0].asls["adapter_version"]) for u in alone}


def test_switching_users_swaps_the_adapter_in_place(tiny_model_dir):
    """The model loop puts each user's adapter into the one shared model before their answer:
    after a switch the logits are exactly that user's, never the previous user's."""
    import mlx.core as mx

    from asls_mlx import AssistantConfig
    from asls_mlx.serve.worker import ModelWorker

    config = AssistantConfig(max_tokens=12, train_budget_s=20, self_labelled=False)
    with Assistant(user="trained", model=str(tiny_model_dir), config=config) as a:
        for q, e in [("What is the capital of France?", "Paris."), ("How do I boil an egg?", "Nine minutes."),
                     ("Name a fruit that is red", "An apple."), ("Explain rain", "Water falls.")]:
            a.chat(q)
            a.edit(e)
        assert a.end_session(train="wait").training.committed
    worker = ModelWorker(str(tiny_model_dir), config)
    worker.load()
    ids = mx.array([worker._engine.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)])

    def logits_as(user):
        worker._switch_to(user)
        return worker._engine.model(ids)[0, -1]

    base = logits_as("fresh")
    adapted = logits_as("trained")
    assert not mx.allclose(adapted, base, atol=1e-4)
    assert mx.array_equal(logits_as("fresh"), base) and mx.array_equal(logits_as("trained"), adapted)
    assert worker._assistants["trained"].adapter_version == 1 and worker._assistants["fresh"].adapter_version is None
    for assistant in worker._assistants.values():
        assistant.close()


def test_sigterm_mid_answer_stores_what_was_written_and_exits_cleanly(tiny_model_dir, tmp_path, monkeypatch):
    import signal

    srv = start_server(tmp_path / "home", str(tiny_model_dir), "--quiet")
    client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="asls", user="cut", messages=[{"role": "user", "content": "Talk."}],
                                            max_tokens=4000, stream=True)
    received = [next(stream), next(stream)]  # the role chunk, then the first text: the answer is being written
    srv.proc.send_signal(signal.SIGTERM)
    received += list(stream)  # the stream ends early, properly closed
    assert srv.proc.wait(60) == 0, srv.log.read_text()
    assert len(received) < 1000 and received[-1].choices[0].finish_reason == "length"  # cut, far before 4000 tokens
    assert "stopped" in srv.log.read_text()
    monkeypatch.setenv("ASLS_HOME", str(tmp_path / "home"))
    a = Assistant(user="cut", exclusive=True)  # the server released the user's lock
    history = a.history()
    a.close()
    assert [m.role for m in history] == ["user", "assistant"]


def test_an_idle_session_ends_by_itself(tiny_model_dir, tmp_path):
    import time

    srv = start_server(tmp_path / "home", str(tiny_model_dir), "--quiet", "--idle-minutes", "0.02")
    try:
        client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
        _ask(client, "idle", [{"role": "user", "content": "Hello"}], max_tokens=4)
        for _ in range(60):
            if srv.status("idle")["open_sessions"] == 0:
                break
            time.sleep(0.5)
        assert srv.status("idle")["open_sessions"] == 0
        assert "idle: session ended" in srv.log.read_text()
    finally:
        assert srv.stop() == 0


def test_a_client_that_leaves_mid_stream_stops_its_answer_and_the_server_goes_on(client, server, monkeypatch):
    import http.client
    import json as json_
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    body = {"user": "leaver", "stream": True, "max_tokens": 4000, "messages": [{"role": "user", "content": "Talk."}]}
    conn.request("POST", "/v1/chat/completions", json_.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")
    response.close()  # the user closed the tab: the connection goes away mid-answer
    conn.close()
    after, _ = _ask(client, "stayer", [{"role": "user", "content": "Still there?"}], max_tokens=4)
    assert after.choices[0].finish_reason in ("stop", "length")
    history, _, _ = _stored(server, monkeypatch, "leaver")
    assert [m.role for m in history] == ["user", "assistant"]
