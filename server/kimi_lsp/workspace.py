"""What a request may see beyond its selection: the images it references and the tools' sandbox, both
confined to the workspace folders."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import errors
from .actions import IMAGE_ACTIONS, ActionSpec, Job
from .client import thinks
from .images import MIME, Image, ImageRef, find_image_refs
from .settings import Settings
from .tools import Sandbox, ToolBox, ToolError

if TYPE_CHECKING:
    from .server import KimiLanguageServer


def fs_path(uri: Optional[str]) -> Optional[str]:
    from pygls.uris import to_fs_path

    return to_fs_path(uri) if uri else None


def sandbox_for(ls: "KimiLanguageServer", settings: Settings) -> Sandbox:
    roots = [p for p in (fs_path(f.uri) for f in ls.workspace.folders.values()) if p]
    if not roots and ls.workspace.root_path:
        roots = [ls.workspace.root_path]

    def open_doc(real_path: str) -> Optional[str]:
        """An open buffer's text (only looked up when a tool reads a file: joining text costs time)."""
        import os

        for uri, doc in list(ls.workspace.text_documents.items()):
            path = fs_path(uri)
            if path and os.path.realpath(path) == real_path:
                return doc.source
        return None

    return Sandbox([Path(r) for r in roots], open_doc, tuple(settings.tool_deny))


def toolbox_for(ls: "KimiLanguageServer", settings: Settings, model: Any, sandbox: Sandbox) -> Optional[ToolBox]:
    if settings.tools == "off" or not model.tools or not sandbox.roots:
        return None
    web = settings.web_search
    if web and thinks(model, settings):
        web = False
        ls.notice_once("web-thinking", "Kimi: web search is off while thinking is on (Moonshot does not allow both); "
                                       "set kimi.thinking to disabled or pick a model without thinking to use it.")
    elif web:
        ls.notice_once("web-cost", "Kimi: web search is on. Moonshot bills each $web_search call, plus the tokens of "
                                   "the results it adds to the prompt.")
    return ToolBox(sandbox, diagnostics=dict(ls.seen_diagnostics), web_search=web)


async def load_images(spec: ActionSpec, job: Job, uri: Optional[str], paths: list[str],
                      sandbox: Sandbox) -> list[Image]:
    """The images a request carries: the reference in the selection for image actions, or `images` of kimi.ask."""
    base = Path(p).parent if (p := fs_path(uri)) else None
    if spec.id in IMAGE_ACTIONS:
        ref = image_ref(job, spec.id)
        if ref is None:
            raise errors.Refused(f"{spec.title}: no image reference (Markdown, HTML img, CSS url() or a quoted .png/"
                                 ".jpg/.jpeg/.webp/.gif path) in the selection or on the cursor's line.")
        paths = [ref.path]
    limit = job.settings.max_image_bytes
    from_code = spec.id in IMAGE_ACTIONS  # a reference in code may carry ?v=2 or #anchor; a given path is exact

    def load(path: str) -> Image:
        clean = path.split("?")[0].split("#")[0] if from_code else path
        mime = MIME.get(Path(clean).suffix.lower())
        if not mime:
            raise errors.Refused(f"{path} is not a PNG, JPEG, WebP or GIF image.")
        try:
            real = sandbox.resolve(clean, base)
            data = sandbox.read_bytes(real, limit)
        except ToolError as exc:
            raise errors.Refused(f"Image {path}: {str(exc).removeprefix('error: ')}"
                                 + ("; raise kimi.maxImageBytes to send it" if "limit" in str(exc) else "")
                                 + ". Nothing was sent.") from None
        except OSError as exc:
            raise errors.Refused(f"Image {path} could not be read ({exc.strerror or exc}). Nothing was sent.") from None
        return Image(sandbox.relative(real), mime, data)

    return [await asyncio.to_thread(load, p) for p in paths]


def image_ref(job: Job, action: str) -> Optional[ImageRef]:
    refs = find_image_refs(job.selection)
    if action == "alt-text":
        refs = [r for r in refs if r.kind in ("markdown", "html")]
    return refs[0] if refs else None
