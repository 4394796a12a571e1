"""Fuzzing the LSP surface with hypothesis, against ONE long-lived server per test.

Each test owns an event loop and an editor session started once; hypothesis drives examples through it
(`given` on an inner function, so the server is not restarted per example). After every example: the server
process is alive and every request got a result or a well-formed JSON-RPC error (a missing answer is a
time-out, which fails). After the fuzz: a normal refactor works and uses the last GOOD settings.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lsprotocol import types as lsp

import harness
from fault_helpers import alive, close_editor, is_well_formed_error, raw_notify, raw_request
from harness import editor, rng

CODE = "def f(x):\n    return x * 2  # BUG\n\n\nprint(f(2))\n\n# ünïcödé 𝄞 line\n"
GOOD_MODEL = "moonshot-v1-32k"
ANSWER_TIMEOUT = 10  # seconds a request may take before it counts as unanswered
EXAMPLES = 60

# No shrinking: an unanswered request costs ANSWER_TIMEOUT, and shrinking would replay hundreds of them.
# derandomize: the same examples on every run (CI stays deterministic); the failing example is printed.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
PARAMS_TYPES = {"textDocument/codeAction": lsp.CodeActionParams, "workspace/executeCommand": lsp.ExecuteCommandParams}


class LoopSession:
    """An editor session on a private event loop, usable from a sync test (and so from hypothesis)."""

    def __init__(self, root, settings_: dict, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._cm = editor("visual-studio-code", root, settings_, **kw)
        self.ed = self.loop.run_until_complete(self._cm.__aenter__())

    def run(self, coro, timeout: float = 120) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(close_editor(self.ed, self._cm))
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


@pytest.fixture
def session_factory(tmp_path):
    made: list[LoopSession] = []

    def make(settings_: dict, **kw: Any) -> LoopSession:
        made.append(LoopSession(tmp_path, settings_, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


# ---------------------------------------------------------------------------------------------- strategies

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JUNK = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = {"n": value} if i % 2 else [value]
    return value


DEEP = st.integers(50, 400).map(deep)  # deep nesting, below JSON parsers' recursion limits
NUMBERS = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([2**31 - 1, 2**31, 2**53, 2**63, -(2**63), 10**30]),
    st.floats(-2.0, 1e9, allow_nan=False),
    st.sampled_from([1.5, -0.0, 1e308]),
)
POSITION = st.one_of(
    st.fixed_dictionaries({"line": NUMBERS, "character": NUMBERS}),
    st.fixed_dictionaries({}, optional={"line": st.one_of(NUMBERS, JUNK), "character": st.one_of(NUMBERS, JUNK)}),
    JUNK,
)
SANE_POSITION = st.fixed_dictionaries({"line": st.integers(0, 10), "character": st.integers(0, 30)})
UINT = st.one_of(st.integers(0, 12), st.integers(0, 2**31 - 1), st.just(2**31 - 1))
# LSP-shaped but meaningless: inverted, empty, past the end of the line or the document
SHAPED_RANGE = st.fixed_dictionaries(
    {
        "start": st.fixed_dictionaries({"line": UINT, "character": UINT}),
        "end": st.fixed_dictionaries({"line": UINT, "character": UINT}),
    }
)
RANGE = st.one_of(
    SHAPED_RANGE,
    st.fixed_dictionaries({"start": SANE_POSITION, "end": SANE_POSITION}),  # inverted, empty and past-the-end
    st.fixed_dictionaries({"start": POSITION, "end": POSITION}),
    st.fixed_dictionaries({}, optional={"start": POSITION, "end": POSITION}),
    JUNK,
)


def uris(good: str) -> st.SearchStrategy:
    return st.one_of(
        st.just(good),
        st.sampled_from(
            [
                "file:///does/not/exist.py",
                "",
                "not a uri",
                "untitled:Untitled-1",
                "file:///%ZZ%",
                "file://host/x.py",
                good + "#frag",
                good.upper(),
                "file:///" + "a" * 5000 + ".py",
                "http://example.invalid/x.py",
            ]
        ),
        st.text(max_size=30),
        JUNK,
    )


ACTION_COMMANDS = ["kimi.explain", "kimi.refactor", "kimi.fix", "kimi.document", "kimi.ask", "kimi.runAction"]
OTHER_COMMANDS = ["kimi.listModels", "kimi.status", "kimi.cancel", "kimi.clearApiKey", "kimi.nope", "", "kimi."]
STATEFUL = {"kimi.selectModel": "model", "kimi.setRegion": "region", "kimi.setApiKey": "key"}


def action_args(good_uri: str) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"uri": uris(good_uri), "range": RANGE},
        optional={
            "instruction": st.one_of(st.text(max_size=30), JUNK),
            "prompt": st.one_of(st.text(max_size=30), JUNK),
            "id": st.one_of(st.sampled_from(["shout", "missing", ""]), JUNK),
            "diagnostics": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"message": st.one_of(st.text(max_size=10), JUNK)}, optional={"line": NUMBERS}
                    )
                ),
                JUNK,
            ),
            "images": JUNK,
            "requestId": JUNK,
        },
    )


def stateful_args(name: str) -> st.SearchStrategy:
    """Arguments for commands that change session state, never valid (a valid model would rightly win)."""
    key = STATEFUL[name]
    not_a_string = JUNK.filter(lambda v: not isinstance(v, str))
    bad_dict = st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != key), JUNK, max_size=3
    ) | st.fixed_dictionaries({key: not_a_string})
    return st.one_of(bad_dict, not_a_string)


def command_params(good_uri: str) -> st.SearchStrategy:
    def arguments(one: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(
            st.lists(one, min_size=1, max_size=2),
            st.just([]),
            st.lists(st.lists(one, max_size=1), min_size=1, max_size=1),
        )

    plain = st.tuples(
        st.sampled_from(ACTION_COMMANDS + OTHER_COMMANDS), arguments(st.one_of(action_args(good_uri), JUNK, DEEP))
    )
    stateful = st.sampled_from(sorted(STATEFUL)).flatmap(
        lambda name: st.tuples(st.just(name), arguments(stateful_args(name)))
    )
    body = st.one_of(plain, stateful).map(lambda t: {"command": t[0], "arguments": t[1]})
    # and a few whole-params shapes that are wrong: no command, arguments not a list, junk
    broken = st.one_of(st.fixed_dictionaries({}, optional={"command": JUNK, "arguments": JUNK}), JUNK)
    return st.one_of(body, body, body, body, broken)


def code_action_params(good_uri: str) -> st.SearchStrategy:
    shaped_context = st.fixed_dictionaries(
        {
            "diagnostics": st.lists(
                st.fixed_dictionaries(
                    {"range": SHAPED_RANGE, "message": st.text(max_size=20)},
                    optional={
                        "source": st.sampled_from(["kimi", "pyright", ""]),
                        "code": st.one_of(st.text(max_size=12), st.integers(0, 99)),
                    },
                ),
                max_size=3,
            )
        },
        optional={
            "only": st.lists(
                st.sampled_from(
                    [
                        "quickfix",
                        "refactor",
                        "refactor.rewrite",
                        "kimi",
                        "kimi.explain",
                        "",
                        "source",
                        "refactor.rewrite.x",
                    ]
                ),
                max_size=3,
            )
        },
    )
    shaped = st.fixed_dictionaries(
        {
            "textDocument": st.fixed_dictionaries(
                {"uri": st.one_of(st.just(good_uri), uris(good_uri).filter(lambda u: isinstance(u, str)))}
            ),
            "range": SHAPED_RANGE,
            "context": shaped_context,
        }
    )
    context = st.one_of(
        st.fixed_dictionaries(
            {"diagnostics": st.just([])},
            optional={
                "only": st.one_of(
                    st.lists(
                        st.sampled_from(["quickfix", "refactor", "refactor.rewrite", "kimi", "", "source"]), max_size=3
                    ),
                    JUNK,
                )
            },
        ),
        st.fixed_dictionaries(
            {
                "diagnostics": st.lists(
                    st.fixed_dictionaries(
                        {"range": RANGE, "message": st.one_of(st.text(max_size=10), JUNK)},
                        optional={"source": st.sampled_from(["kimi", "pyright", ""]), "code": JUNK},
                    ),
                    max_size=2,
                )
            }
        ),
        JUNK,
    )
    good = st.fixed_dictionaries(
        {"textDocument": st.fixed_dictionaries({"uri": uris(good_uri)}), "range": RANGE, "context": context}
    )
    wrong = st.fixed_dictionaries({}, optional={"textDocument": JUNK, "range": JUNK, "context": JUNK})
    return st.one_of(shaped, shaped, shaped, shaped, good, st.one_of(wrong, JUNK))


# ------------------------------------------------------------------------------------------------- helpers


async def ask(ed, method: str, params: Any) -> str:
    """One request: 'result' or 'error'; anything else (no answer, malformed answer) fails the example."""
    try:
        await raw_request(ed, method, params, timeout=ANSWER_TIMEOUT)
        return "result"
    except TimeoutError:
        raise AssertionError(
            f"no answer within {ANSWER_TIMEOUT}s to {method} {json.dumps(params, default=repr)[:400]}"
        ) from None
    except Exception as exc:
        assert is_well_formed_error(exc), f"{method}: not a JSON-RPC error: {exc!r}"
        return "error"


def protocol_valid(ed, method: str, params: Any) -> bool:
    """Whether params have the LSP shape of the method (lsprotocol can structure them). Semantics may be junk:
    out-of-range, inverted or empty ranges, unknown URIs, junk command arguments all have the right shape."""
    try:
        ed.client.protocol._converter.structure(params, PARAMS_TYPES[method])
        return True
    except Exception:
        return False


def check_alive(ed) -> None:
    assert alive(ed), f"the server process exited with {ed.client._server.returncode}"


async def good_refactor(ed, fake, uri: str) -> dict:
    ed.change(uri, CODE)
    r = await ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 2, 0), "instruction": "rename x to y"})
    assert "error" not in r, r
    assert r["applied"] is True and ed.texts[uri].startswith("def f(y):"), r
    return r


# ----------------------------------------------------------------------------------------------------- tests


def test_fuzz_code_actions_and_commands(fake, session_factory):
    """Code actions and commands with out-of-range, inverted and empty ranges, unknown URIs and junk arguments."""
    good = {
        "baseUrl": fake.base_url,
        "previewEdits": "never",
        "commandResult": "final",
        "model": GOOD_MODEL,
        "actions": [
            {"id": "shout", "title": "Shout", "prompt": "Instruction: uppercase\n{selection}", "output": "replace"}
        ],
    }
    s = session_factory(good)
    ed = s.ed
    uri = ed.open("fuzz.py", CODE)
    s.run(ed.command("kimi.status"))
    outcomes: dict[str, int] = {"result": 0, "error": 0, "malformed": 0}

    @FUZZ
    @given(data=st.data())
    def one(data):
        n = data.draw(st.integers(1, 3), label="requests")
        for _ in range(n):
            if data.draw(st.booleans(), label="codeAction?"):
                method, params = "textDocument/codeAction", data.draw(code_action_params(uri), label="codeAction")
            else:
                method, params = "workspace/executeCommand", data.draw(command_params(uri), label="command")
            if not protocol_valid(ed, method, params):
                outcomes["malformed"] += 1  # wrong LSP shape: must still get an error answer (asked below)
            outcomes[s.run(ask(ed, method, params))] += 1
            check_alive(ed)

    one()
    check_alive(ed)
    print("outcomes", outcomes)
    assert outcomes["result"] > 20 and outcomes["error"] > 20, outcomes  # the fuzz reached both kinds of answer
    st_ = s.run(ed.command("kimi.cancel"))
    assert isinstance(st_["cancelled"], int)
    r = s.run(good_refactor(ed, fake, uri))
    assert fake.chat_requests()[-1].model == GOOD_MODEL and r["model"] == GOOD_MODEL
    status = s.run(ed.command("kimi.status"))
    assert status["model"] == GOOD_MODEL and status["running"] == 0


# settings: every key of the kimi section, with values of the wrong type, huge numbers, unknown enums, deep nesting
SETTING_KEYS = [
    "model",
    "region",
    "baseUrl",
    "thinking",
    "maxTokens",
    "temperature",
    "requestTimeout",
    "customModels",
    "actions",
    "contextLines",
    "previewEdits",
    "proxy",
    "caBundle",
    "inline",
]
BAD_VALUE = st.one_of(
    JUNK, DEEP, NUMBERS, st.sampled_from(["mars", "ENABLED", "Auto", "", " ", "null", "🙂" * 50]), st.text(max_size=40)
)


def bad_model() -> st.SearchStrategy:
    """Model values the server must reject (so the last good model must survive them)."""
    return st.one_of(
        st.none(),
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
        st.just(""),
        st.lists(JSON_SCALARS, max_size=2),
        st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=2),
        DEEP,
    )


def bad_base_url() -> st.SearchStrategy:
    return st.one_of(
        st.integers(),
        st.booleans(),
        st.just("ftp://x"),
        st.just("localhost:1234"),
        st.text(max_size=20).filter(lambda t: not t.startswith(("http://", "https://")) and t != ""),
        st.lists(JSON_SCALARS, max_size=2),
        DEEP,
    )


def settings_objects(base_url: str) -> st.SearchStrategy:
    """A `kimi` section whose model and baseUrl are always present and either the good value or invalid, and
    whose other keys are anything (often wrong); or a section that is not an object at all. (An object that
    omits model/baseUrl legitimately means "defaults" for them, so it cannot test last-good-value.)"""
    section = st.fixed_dictionaries(
        {"model": st.one_of(st.just(GOOD_MODEL), bad_model()), "baseUrl": st.one_of(st.just(base_url), bad_base_url())},
        optional={**{k: BAD_VALUE for k in SETTING_KEYS if k not in ("model", "baseUrl")}, "unknownKey": JUNK},
    )
    not_an_object = st.one_of(JUNK, DEEP).filter(lambda v: not isinstance(v, dict) and v is not None)
    return st.one_of(section, section, section, not_an_object)


def _without_configuration(profile: str):
    """A client that cannot answer workspace/configuration: settings come only from didChangeConfiguration."""
    caps = _original_caps(profile)
    if caps.workspace is not None:
        caps.workspace.configuration = None
    return caps


_original_caps = harness.client_capabilities


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_fuzz_settings_keep_the_last_good_ones(fake, session_factory, monkeypatch, mode):
    """Random settings answered to workspace/configuration (pull: a client like VS Code) or pushed by
    didChangeConfiguration (push: a client without workspace/configuration); a request and a status after each.
    The server never dies, and the last good model and base URL survive every bad value."""
    if mode == "push":
        monkeypatch.setattr(harness, "client_capabilities", _without_configuration)
    good = {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final", "model": GOOD_MODEL}
    s = session_factory(good, init_options={"settings": good})
    ed = s.ed
    uri = ed.open("fuzz.py", CODE)
    s.run(good_refactor(ed, fake, uri))
    assert fake.chat_requests()[-1].model == GOOD_MODEL

    @FUZZ
    @given(data=st.data())
    def one(data):
        raw = data.draw(settings_objects(fake.base_url), label="settings")
        ed.client.set_configuration(raw, section="kimi")  # the answer to workspace/configuration (pull)
        wrapped = data.draw(st.booleans(), label="wrapped in {kimi: ...}")
        raw_notify(ed, "workspace/didChangeConfiguration", {"settings": {"kimi": raw} if wrapped else raw})
        # a cheap request and a status after each change: answered, and the server still knows its settings
        s.run(
            ask(
                ed,
                "textDocument/codeAction",
                {"textDocument": {"uri": uri}, "range": rng(0, 0, 1, 0), "context": {"diagnostics": []}},
            )
        )
        status = s.run(ed.command("kimi.status", timeout=ANSWER_TIMEOUT))
        assert status["model"] == GOOD_MODEL, f"the model changed to {status['model']!r} after {raw!r}"[:500]
        assert status["baseUrl"] == fake.base_url, status
        check_alive(ed)

    one()
    check_alive(ed)
    # good settings, then garbage for every key: the good values are still used
    ed.configure({**good, "maxTokens": 2000, "requestTimeout": 30})
    assert s.run(ed.command("kimi.status"))["model"] == GOOD_MODEL
    worst = {
        "model": 42,
        "baseUrl": {"deep": deep(100)},
        "maxTokens": "lots",
        "temperature": -1,
        "requestTimeout": 10**30,
        "thinking": "sometimes",
        "region": "mars",
        "previewEdits": "never",
        "commandResult": "final",
    }
    ed.configure(worst)
    r = s.run(good_refactor(ed, fake, uri))
    body = fake.chat_requests()[-1].body
    assert body["model"] == GOOD_MODEL and r["model"] == GOOD_MODEL, body["model"]
    assert body["max_completion_tokens"] == 2000 and "temperature" not in body
    # warnings about bad settings were shown, and each only once (not a flood)
    warnings = [m.message for m in ed.client.messages if "invalid settings" in m.message]
    assert warnings and len(warnings) == len(set(warnings))


@pytest.mark.parametrize("section", [[1, 2], "kimi-k2-thinking", 42, True], ids=["list", "string", "number", "bool"])
def test_pushed_section_that_is_not_an_object_keeps_settings(fake, session_factory, monkeypatch, section):
    monkeypatch.setattr(harness, "client_capabilities", _without_configuration)
    good = {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final", "model": GOOD_MODEL}
    s = session_factory(good, init_options={"settings": good})
    ed = s.ed
    assert s.run(ed.command("kimi.status"))["model"] == GOOD_MODEL
    raw_notify(ed, "workspace/didChangeConfiguration", {"settings": {"kimi": section}})
    status = s.run(ed.command("kimi.status"))
    assert (status["model"], status["baseUrl"]) == (GOOD_MODEL, fake.base_url), status
    assert any("kimi" in m.message and "object" in m.message for m in ed.client.messages), (
        "the bad section was not reported"
    )


MALFORMED = [
    ("textDocument/codeAction", {}),
    (
        "textDocument/codeAction",
        {"textDocument": {"uri": "file:///x.py"}, "range": "0-1", "context": {"diagnostics": []}},
    ),
    (
        "textDocument/codeAction",
        {
            "textDocument": {"uri": "file:///x.py"},
            "range": {"start": {"line": 2**63, "character": 0}, "end": {"line": 0, "character": 0}},
            "context": {"diagnostics": []},
        },
    ),
    ("textDocument/codeAction", [1, 2, 3]),
    ("workspace/executeCommand", {"command": 42, "arguments": []}),
    ("workspace/executeCommand", {"arguments": [{}]}),
    ("workspace/executeCommand", {"command": "kimi.status", "arguments": "not a list"}),
]


def test_malformed_params_are_answered(fake, session_factory):
    """Every request is answered, even one whose params have the wrong LSP shape: JSON-RPC says InvalidParams
    (-32602). Unanswered requests hang the editor's UI (a code-action menu that never opens)."""
    s = session_factory({"baseUrl": fake.base_url, "commandResult": "final"})
    ed = s.ed

    async def all_of_them() -> list[str]:
        async def one(method: str, params: Any) -> str:
            try:
                await raw_request(ed, method, params, timeout=3)
                return "result"
            except TimeoutError:
                return "no answer"
            except Exception as exc:
                return f"error {getattr(exc, 'code', None)}" if is_well_formed_error(exc) else f"bad {exc!r}"

        return list(await asyncio.gather(*(one(m, p) for m, p in MALFORMED)))

    answers = s.run(all_of_them())
    check_alive(ed)
    assert answers == ["error -32602"] * len(MALFORMED), list(zip([m for m, _ in MALFORMED], answers))


def test_fuzz_notifications(fake, session_factory):
    """Document and protocol notifications with junk (incremental changes with out-of-range and inverted ranges,
    unknown URIs, stale versions, cancel requests for unknown ids): no answer is due, but the server must live on
    and keep serving; a document it was told about afterwards in full is served correctly."""
    good = {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final", "model": GOOD_MODEL}
    s = session_factory(good)
    ed = s.ed
    uri = ed.open("fuzz.py", CODE)
    change = st.fixed_dictionaries({"text": st.text(max_size=20)}, optional={"range": RANGE, "rangeLength": NUMBERS})
    notification = st.one_of(
        st.tuples(
            st.just("textDocument/didChange"),
            st.fixed_dictionaries(
                {
                    "textDocument": st.fixed_dictionaries({"uri": uris(uri), "version": NUMBERS}),
                    "contentChanges": st.one_of(st.lists(change, max_size=3), JUNK),
                }
            ),
        ),
        st.tuples(
            st.just("textDocument/didOpen"),
            st.fixed_dictionaries(
                {
                    "textDocument": st.fixed_dictionaries(
                        {
                            "uri": uris(uri).filter(lambda u: u != uri),
                            "languageId": st.text(max_size=8),
                            "version": NUMBERS,
                            "text": st.text(max_size=50),
                        }
                    )
                }
            ),
        ),
        st.tuples(
            st.just("textDocument/didClose"),
            st.fixed_dictionaries(
                {"textDocument": st.fixed_dictionaries({"uri": uris(uri).filter(lambda u: u != uri)})}
            ),
        ),
        st.tuples(
            st.sampled_from(
                [
                    "$/cancelRequest",
                    "$/setTrace",
                    "window/workDoneProgress/cancel",
                    "workspace/didChangeWorkspaceFolders",
                    "kimi/unknown",
                    "$/unknown",
                ]
            ),
            JUNK,
        ),
    )

    @FUZZ
    @given(data=st.data())
    def one(data):
        for method, params in data.draw(st.lists(notification, min_size=1, max_size=4), label="notifications"):
            raw_notify(ed, method, params)
        s.run(
            ask(
                ed,
                "textDocument/codeAction",
                {"textDocument": {"uri": uri}, "range": rng(0, 0, 1, 0), "context": {"diagnostics": []}},
            )
        )
        check_alive(ed)

    one()
    check_alive(ed)
    # whatever the junk did to fuzz.py, a full-text change resets it, and a refactor is exact
    r = s.run(good_refactor(ed, fake, uri))
    assert fake.chat_requests()[-1].model == GOOD_MODEL and r["applied"] is True
