"""A scripted editor for end-to-end tests: drives the real `kimi-lsp` process over stdio with pytest-lsp's
client, answers workspace/configuration and workspace/applyEdit like an editor, and records what it sees."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import typing
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

from lsprotocol import types as lsp
from pytest_lsp import client_capabilities, make_test_lsp_client

from lsp_reference import ref_apply  # the test editor applies edits exactly as the LSP reference does

FAKE_KEY = "sk-fake-valid-key"
# The Python the end-to-end tests edit: `average` (test_lsp_core, security) and the editors' `add` sample.
AVERAGE = """def average(values):
    total = 0
    for v in values:
        total = total + v
    return total / len(values)  # BUG: empty list


print(average([1, 2]))
"""
EDITOR_SAMPLE = """\
def add(xs):
    total = 0
    for x in xs:
        total += x
    return total


def broken():
    return 1  # BUG
"""
PROFILES = ["visual-studio-code", "neovim"]


def base(fake, **extra) -> dict:
    """kimi settings pointing at the fake; edits apply without a preview unless a test asks for one; commands
    answer with their final result (plain clients get an immediate {requestId, started} by default)."""
    return {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final", **extra}


def pos(line: int, ch: int) -> dict:
    return {"line": line, "character": ch}


def rng(l1: int, c1: int, l2: int, c2: int) -> dict:
    return {"start": pos(l1, c1), "end": pos(l2, c2)}


class Editor:
    def __init__(self, profile: str, root: Path) -> None:
        self.profile = profile
        self.root = root
        self.client = make_test_lsp_client()
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.applied: list[lsp.ApplyWorkspaceEditParams] = []
        self.stream: list[dict] = []
        self.proposals: list[dict] = []  # every kimi/proposal notification, in order
        self.decline_edits = False
        self.lens_refreshes = 0
        self.encoding = "utf-16"  # what the server chose in its initialize result
        self.server_capabilities: Optional[lsp.ServerCapabilities] = None
        self.capabilities = _capabilities(profile)
        self._fix_code_action_decoding()
        self._register()

    # -- editor behaviour ------------------------------------------------------------------------------
    def _register(self) -> None:
        @self.client.feature(lsp.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            self.applied.append(params)
            if self.decline_edits:
                return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="declined by test")
            edit = params.edit
            if edit.document_changes:
                for change in edit.document_changes:
                    uri = change.text_document.uri
                    if change.text_document.version is not None and change.text_document.version != self.versions[uri]:
                        return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="version mismatch")
                    self.change(uri, ref_apply(self.texts[uri], change.edits, self.encoding))
            for uri, edits in (edit.changes or {}).items():
                self.change(uri, ref_apply(self.texts[uri], edits, self.encoding))
            return lsp.ApplyWorkspaceEditResult(applied=True)

        @self.client.feature(lsp.WORKSPACE_CODE_LENS_REFRESH)
        def lens_refresh(params: Any) -> None:
            self.lens_refreshes += 1

        @self.client.feature("kimi/stream")
        def on_stream(params: Any) -> None:
            self.stream.append(_plain(params))

        @self.client.feature("kimi/proposal")
        def on_proposal(params: Any) -> None:
            self.proposals.append(_plain(params))

    def _fix_code_action_decoding(self) -> None:
        # lsprotocol 2025.0.0 decodes a CodeAction with a nested Command as a Command (see shared/testing.md).
        conv = self.client.protocol._converter
        union = typing.Union[lsp.Command, lsp.CodeAction]

        def hook(obj: Any, _t: Any) -> Any:
            if isinstance(obj.get("command"), str):
                return conv.structure(obj, lsp.Command)
            return conv.structure(obj, lsp.CodeAction)

        conv.register_structure_hook(union, hook)

    # -- documents ---------------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str, language: str = "python") -> str:
        uri = self.uri(name)
        self.texts[uri] = text
        self.versions[uri] = 1
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
            )
        )
        return uri

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )

    def change(self, uri: str, text: str) -> None:
        self.texts[uri] = text
        self.versions[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    def edit(self, uri: str, line: int, ch: int, end_line: int, end_ch: int, text: str) -> None:
        """An incremental change, as editors send them."""
        r = lsp.Range(start=lsp.Position(line=line, character=ch), end=lsp.Position(line=end_line, character=end_ch))
        self.texts[uri] = ref_apply(self.texts[uri], [lsp.TextEdit(range=r, new_text=text)], self.encoding)
        self.versions[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[lsp.TextDocumentContentChangePartial(range=r, text=text)],
            )
        )

    async def hover(self, uri: str, line: int, ch: int) -> Optional[lsp.Hover]:
        return await asyncio.wait_for(
            self.client.text_document_hover_async(
                lsp.HoverParams(
                    text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=line, character=ch)
                )
            ),
            5,
        )

    async def lenses(self, uri: str) -> list[lsp.CodeLens]:
        return (
            await asyncio.wait_for(
                self.client.text_document_code_lens_async(
                    lsp.CodeLensParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
                ),
                5,
            )
            or []
        )

    # -- requests ------------------------------------------------------------------------------------------
    async def command(self, name: str, args: Optional[dict] = None, timeout: float = 20) -> Any:
        result = await asyncio.wait_for(
            self.client.workspace_execute_command_async(lsp.ExecuteCommandParams(command=name, arguments=[args or {}])),
            timeout,
        )
        return _plain(result)

    def command_with_id(self, name: str, args: dict, msg_id: str) -> asyncio.Future:
        """Sends a command with a known JSON-RPC id, so a test can `$/cancelRequest` it."""
        return asyncio.ensure_future(
            self.client.protocol.send_request_async(
                lsp.WORKSPACE_EXECUTE_COMMAND, lsp.ExecuteCommandParams(command=name, arguments=[args]), msg_id=msg_id
            )
        )

    def cancel_request(self, msg_id: str) -> None:
        self.client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))

    def progress_messages(self) -> list[str]:
        return [getattr(v, "message", None) or "" for reports in self.client.progress_reports.values() for v in reports]

    async def code_actions(
        self,
        uri: str,
        r: dict,
        *,
        only: Optional[list[str]] = None,
        diagnostics: Optional[list[lsp.Diagnostic]] = None,
        timeout: float = 5,
    ) -> list:
        conv = self.client.protocol._converter
        params = lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            range=conv.structure(r, lsp.Range),
            context=lsp.CodeActionContext(diagnostics=diagnostics or [], only=only),
        )
        return await asyncio.wait_for(self.client.text_document_code_action_async(params), timeout) or []

    def configure(self, settings: dict, notify: bool = True) -> None:
        self.client.set_configuration(settings, section="kimi")
        if notify:
            self.client.workspace_did_change_configuration(
                lsp.DidChangeConfigurationParams(settings={"kimi": settings})
            )

    def messages(self) -> list[str]:
        return [m.message for m in self.client.messages]

    async def wait_for(self, predicate, timeout: float = 10, what: str = "condition") -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.02)

        try:
            await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


PLAIN_PROFILES = Path(__file__).parent / "editors" / "plain_profiles"


def _capabilities(profile: str) -> lsp.ClientCapabilities:
    """pytest-lsp's profiles, or the capabilities a real plain editor sent (tests/editors/plain_profiles/*.json,
    captured by tests/editors/test_plain_editors.py): eglot, ALE, Neovim 0.7."""
    captured = PLAIN_PROFILES / f"{profile}.json"
    if captured.exists():
        import json

        from pygls.protocol import default_converter

        raw = json.loads(captured.read_text())["capabilities"]
        return default_converter().structure(raw, lsp.ClientCapabilities)
    return client_capabilities(profile)


def _plain(value: Any) -> Any:
    """lsprotocol/cattrs objects (and pygls' Object wrappers) to plain JSON values."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOONSHOT_", "KIMI_"))}
    env.update(
        {
            "MOONSHOT_API_KEY": FAKE_KEY,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "KIMI_LSP_RETRY_BASE": "0.05",
            "KIMI_LSP_RPM_WINDOW": "2",
            "KIMI_LSP_STATE_DIR": tempfile.mkdtemp(
                prefix="kimi-state-"
            ),  # conversations: one folder per server  # a learned per-minute limit (the fake's faults say "max RPM: 3") never stalls a test
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@asynccontextmanager
async def editor(
    profile: str,
    root: Path,
    settings: Optional[dict] = None,
    *,
    env: Optional[dict] = None,
    init_options: Optional[dict] = None,
    log_file: Optional[Path] = None,
):
    ed = Editor(profile, root)
    if settings is not None:
        ed.client.set_configuration(settings, section="kimi")
    args = ["-m", "kimi_lsp", "--log-level", "DEBUG"]
    if log_file:
        args += ["--log-file", str(log_file)]
    await ed.client.start_io(sys.executable, *args, env=env or server_env())
    result = await asyncio.wait_for(
        ed.client.initialize_session(
            lsp.InitializeParams(
                capabilities=ed.capabilities,
                root_uri=root.as_uri(),
                workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name="ws")],
                initialization_options=init_options,
            )
        ),
        20,
    )
    ed.server_capabilities = result.capabilities
    encoding = result.capabilities.position_encoding
    ed.encoding = str(getattr(encoding, "value", encoding) or "utf-16")
    try:
        yield ed
    finally:
        try:
            await asyncio.wait_for(ed.client.shutdown_session(), 10)
        except (TimeoutError, Exception):
            if ed.client._server and ed.client._server.returncode is None:
                ed.client._server.kill()  # a server that cannot shut down must not hang the suite
            raise
        finally:
            await asyncio.wait_for(ed.client.stop(), 15)
