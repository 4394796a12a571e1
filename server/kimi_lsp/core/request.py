"""Preparing a request from a selection snapshot, the same for the editor and the terminal: the Job (context,
the `# kimi:` instruction), the images it carries, the vision check and the tool policy. What a request may see
beyond its selection is confined to the sandbox's roots (the workspace folders, or the current folder)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from kimi_lsp import errors
from kimi_lsp.core.actions import ActionSpec
from kimi_lsp.core.images import MIME, Image, image_ref
from kimi_lsp.core.instructions import take_instruction
from kimi_lsp.core.pipeline import Job, check_vision
from kimi_lsp.core.tools import Sandbox, ToolBox, ToolError
from kimi_lsp.kimi.models import ModelInfo
from kimi_lsp.kimi.rules import notices, thinks

if TYPE_CHECKING:
    from kimi_lsp.settings import Settings

WEB_WHILE_THINKING = (
    "Kimi: web search is off while thinking is on (Moonshot does not allow both); set kimi.thinking "
    "to disabled or pick a model without thinking to use it."
)
WEB_COST = (
    "Kimi: web search is on. Moonshot bills each $web_search call, plus the tokens of the results it adds to "
    "the prompt."
)


@dataclass
class Snapshot:
    """A selection as the adapter saw it: the whole text, the selection's offsets, and what else it knows."""

    text: str
    start: int
    end: int
    language: str = ""
    path: str = ""  # as shown to the model (relative to the workspace where possible)
    folder: Optional[Path] = None  # the file's folder, for relative image paths
    instruction: str = ""
    diagnostics: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # image paths given with the request (kimi.ask)
    width: int = 100
    generation: Optional[int] = None
    base_text: Optional[str] = None  # the file as earlier prompts on it sent it (core.context.ContextBases)
    changes: str = ""


def new_request_id() -> str:
    return uuid.uuid4().hex[:10]


async def prepare(
    spec: ActionSpec,
    snap: Snapshot,
    settings: Settings,
    model: ModelInfo,
    sandbox: Sandbox,
    candidates: Iterable[ModelInfo],
    request_id: Optional[str] = None,
) -> Job:
    """The Job for `spec` on `snap`, with its images loaded and checked against the model. Raises KimiError
    (Refused) with the reason when the request cannot be sent."""
    job = Job(
        action=spec,
        text=snap.text,
        start=snap.start,
        end=snap.end,
        settings=settings,
        model=model,
        request_id=request_id or new_request_id(),
        language=snap.language,
        path=snap.path,
        instruction=snap.instruction,
        diagnostics=list(snap.diagnostics),
        width=snap.width,
        generation=snap.generation,
        notices=notices(model, settings),
        base_text=snap.base_text if snap.base_text != snap.text else None,
        changes=snap.changes,
    )
    if not job.instruction and not spec.image and (found := take_instruction(job.selection, job.language)):
        job.instruction, job.prompt_selection = found  # `# kimi: …` in the code: plain editors cannot prompt
    paths = [] if spec.image else snap.images
    job.images = await load_images(spec, job, snap.folder, paths, sandbox)
    check_vision(job, candidates)
    return job


def web_search(settings: Settings, model: ModelInfo) -> tuple[bool, Optional[tuple[str, str]]]:
    """Whether `$web_search` is offered, and a notice for the user (key, text) when that needs saying."""
    if not settings.web_search:
        return False, None
    if thinks(model, settings):
        return False, ("web-thinking", WEB_WHILE_THINKING)
    return True, ("web-cost", WEB_COST)


def toolbox(
    settings: Settings, model: ModelInfo, sandbox: Sandbox, diagnostics: Optional[dict[str, list[str]]] = None
) -> tuple[Optional[ToolBox], Optional[tuple[str, str]]]:
    """The tool policy: the read-only tools when settings and model allow them and there is a root to read."""
    if settings.tools == "off" or not model.tools or not sandbox.roots:
        return None, None
    web, notice = web_search(settings, model)
    return ToolBox(sandbox, diagnostics=dict(diagnostics or {}), web_search=web), notice


async def load_images(
    spec: ActionSpec, job: Job, folder: Optional[Path], paths: list[str], sandbox: Sandbox
) -> list[Image]:
    """The images a request carries: the reference in the selection for image actions, or `images` of kimi.ask."""
    if spec.image:
        ref = image_ref(job.selection, spec.key)
        if ref is None:
            raise errors.Refused(
                f"{spec.title}: no image reference (Markdown, HTML img, CSS url() or a quoted .png/"
                ".jpg/.jpeg/.webp/.gif path) in the selection or on the cursor's line."
            )
        paths = [ref.path]
    limit = job.settings.max_image_bytes
    from_code = spec.image  # a reference in code may carry ?v=2 or #anchor; a given path is exact

    def load(path: str) -> Image:
        clean = path.split("?")[0].split("#")[0] if from_code else path
        mime = MIME.get(Path(clean).suffix.lower())
        if not mime:
            raise errors.Refused(f"{path} is not a PNG, JPEG, WebP or GIF image.")
        try:
            real = sandbox.resolve(clean, folder)
            data = sandbox.read_bytes(real, limit)
        except ToolError as exc:
            raise errors.Refused(
                f"Image {path}: {str(exc).removeprefix('error: ')}"
                + ("; raise kimi.maxImageBytes to send it" if "limit" in str(exc) else "")
                + ". Nothing was sent."
            ) from None
        except OSError as exc:
            raise errors.Refused(f"Image {path} could not be read ({exc.strerror or exc}). Nothing was sent.") from None
        return Image(sandbox.relative(real), mime, data)

    return [await asyncio.to_thread(load, p) for p in paths]
