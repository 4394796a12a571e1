/**
 * Proposals (docs/protocol.md, "Proposals"): an edit the server holds for review instead of applying it. This
 * module is the pure part of showing them: the client-side store of live proposals, what to draw for each hunk
 * (removed lines, the new text beside them), the code lenses, hunk navigation, following the user's typing
 * until the server says more, and the proposed text for the diff view. No vscode import: unit-tested under
 * plain Node.
 */
import type { Position, Range } from "./stream";

export type ProposalState = "ready" | "refining" | "stale" | "accepted" | "rejected" | "replaced";

export interface Hunk {
  id: string;
  range: Range;
  oldText: string;
  newText: string;
}

/** The `kimi/proposal` notification (and each item of `kimi.listProposals`). */
export interface ProposalNotification {
  proposalId: string;
  requestId?: string | number;
  uri: string;
  version?: number | null;
  action?: string;
  title?: string;
  output?: string;
  model?: string;
  state: ProposalState | string;
  range?: Range | null;
  hunks?: Hunk[];
  message?: string;
}

/** A live proposal as the client keeps it: the server's last word, its hunks moved with the typing since. */
export interface Proposal {
  id: string;
  uri: string;
  version?: number | null;
  action: string;
  title: string;
  output: string;
  model: string;
  state: "ready" | "refining";
  range: Range | null;
  hunks: Hunk[];
  /** The instruction of the running refinement (client-side: the server does not echo it). */
  refining?: string;
}

export const LIVE_STATES = new Set(["ready", "refining"]);

/** What the view should do after a notification. */
export type Change =
  | { kind: "shown"; proposal: Proposal; isNew: boolean }
  | { kind: "stale"; id: string; uri: string; title: string; message: string; wasLive: boolean }
  | { kind: "ended"; id: string; uri: string; state: string; message?: string }
  | { kind: "ignored" };

// --- text helpers ------------------------------------------------------------------------------------------------

/** The lines of a text, without their line ends; a final line end does not start another line. */
export function splitLines(text: string): string[] {
  if (!text) {
    return [];
  }
  const lines = text.split(/\r\n|\r|\n/);
  if (/(\r\n|\r|\n)$/.test(text)) {
    lines.pop();
  }
  return lines;
}

export function comparePositions(a: Position, b: Position): number {
  return a.line - b.line || a.character - b.character;
}

/** Offset of an LSP position (UTF-16 columns) in `text`, clamped to the text as the server does. */
export function offsetAt(text: string, pos: Position): number {
  let offset = 0;
  for (let line = 0; line < pos.line; line++) {
    const m = /\r\n|\r|\n/g;
    m.lastIndex = offset;
    const found = m.exec(text);
    if (!found) {
      return text.length;
    }
    offset = found.index + found[0].length;
  }
  const rest = /\r\n|\r|\n/g;
  rest.lastIndex = offset;
  const eol = rest.exec(text);
  const lineEnd = eol ? eol.index : text.length;
  return Math.min(offset + Math.max(0, pos.character), lineEnd);
}

/** `text` with the hunks' new text in place of their ranges (the document as accepting them would leave it). */
export function applyHunks(text: string, hunks: readonly Hunk[]): string {
  const spans = hunks
    .map((h) => ({ start: offsetAt(text, h.range.start), end: offsetAt(text, h.range.end), text: h.newText }))
    .sort((a, b) => b.start - a.start);
  let out = text;
  for (const s of spans) {
    out = out.slice(0, s.start) + s.text + out.slice(s.end);
  }
  return out;
}

// --- following the user's typing ---------------------------------------------------------------------------------

/** One `TextDocumentContentChangeEvent`: a range of the text before the change and what replaced it. */
export interface TextChange {
  range: Range;
  text: string;
}

/** Where `pos` (at or after the change's end) is after the change. */
function shiftPosition(pos: Position, change: TextChange): Position {
  const added = splitLinesKeepLast(change.text);
  const lineDelta = added.length - 1 - (change.range.end.line - change.range.start.line);
  if (pos.line !== change.range.end.line) {
    return { line: pos.line + lineDelta, character: pos.character };
  }
  const lastLen = added[added.length - 1].length;
  const base = added.length === 1 ? change.range.start.character + lastLen : lastLen;
  return { line: change.range.start.line + added.length - 1, character: base + (pos.character - change.range.end.character) };
}

function splitLinesKeepLast(text: string): string[] {
  return text.split(/\r\n|\r|\n/);
}

/**
 * A hunk's range after a change of the document, as the server moves it (core.edits.shift): a change that ends
 * at or before the hunk moves it, one that starts at or after its end leaves it, one that touches its inside
 * makes it stale (null; the server says so with a `stale` notification). An empty change changes nothing.
 */
export function rebaseRange(range: Range, change: TextChange): Range | null {
  const empty = comparePositions(change.range.start, change.range.end) === 0 && change.text === "";
  if (empty) {
    return range;
  }
  if (comparePositions(change.range.end, range.start) <= 0) {
    return { start: shiftPosition(range.start, change), end: shiftPosition(range.end, change) };
  }
  if (comparePositions(change.range.start, range.end) >= 0) {
    return range;
  }
  return null;
}

/** A range that must survive any change (the proposal's selection, where its header lens goes). */
function rebaseLoosely(range: Range, change: TextChange): Range {
  const moved = rebaseRange(range, change);
  if (moved) {
    return moved;
  }
  const end = comparePositions(range.end, change.range.end) >= 0 ? shiftPosition(range.end, change) : change.range.start;
  const start = comparePositions(range.start, change.range.start) <= 0 ? range.start : change.range.start;
  return { start, end: comparePositions(end, start) < 0 ? start : end };
}

/** The proposal after a document change: hunks the change touched are hidden until the server speaks. */
export function rebaseProposal(p: Proposal, changes: readonly TextChange[]): { proposal: Proposal; touched: boolean } {
  let hunks = p.hunks;
  let range = p.range;
  let touched = false;
  for (const change of changes) {
    const next: Hunk[] = [];
    for (const h of hunks) {
      const moved = rebaseRange(h.range, change);
      if (moved) {
        next.push(moved === h.range ? h : { ...h, range: moved });
      } else {
        touched = true;
      }
    }
    hunks = next;
    range = range ? rebaseLoosely(range, change) : range;
  }
  return { proposal: { ...p, hunks, range }, touched };
}

// --- the store ---------------------------------------------------------------------------------------------------

/** The live proposals of the session, by id, as the notifications describe them. */
export class ProposalStore {
  private readonly byId = new Map<string, Proposal>();
  private readonly staleShown = new Set<string>();

  get all(): Proposal[] {
    return [...this.byId.values()];
  }

  get(id: string): Proposal | undefined {
    return this.byId.get(id);
  }

  /** The live proposals of a document, top first. */
  of(uri: string): Proposal[] {
    return this.all.filter((p) => p.uri === uri).sort((a, b) => firstLine(a) - firstLine(b));
  }

  get count(): number {
    return this.byId.size;
  }

  clear(): Proposal[] {
    const gone = this.all;
    this.byId.clear();
    return gone;
  }

  apply(n: ProposalNotification): Change {
    if (!n || typeof n.proposalId !== "string" || typeof n.uri !== "string") {
      return { kind: "ignored" };
    }
    const old = this.byId.get(n.proposalId);
    if (LIVE_STATES.has(n.state)) {
      let hunks = Array.isArray(n.hunks) ? n.hunks.filter(isHunk) : [];
      let range = n.range ?? null;
      // The server gives no positions when it has not yet seen the latest text: keep ours until it does.
      if (!hunks.length && !range && old) {
        hunks = old.hunks;
        range = old.range;
      }
      const proposal: Proposal = {
        id: n.proposalId,
        uri: n.uri,
        version: n.version,
        action: n.action ?? old?.action ?? "edit",
        title: n.title ?? old?.title ?? "Kimi",
        output: n.output ?? old?.output ?? "replace",
        model: n.model ?? old?.model ?? "",
        state: n.state as "ready" | "refining",
        range,
        hunks,
        refining: n.state === "refining" ? old?.refining : undefined,
      };
      this.byId.set(proposal.id, proposal);
      return { kind: "shown", proposal, isNew: !old };
    }
    this.byId.delete(n.proposalId);
    if (n.state === "stale") {
      const first = !this.staleShown.has(n.proposalId);
      this.staleShown.add(n.proposalId);
      if (!first) {
        return { kind: "ended", id: n.proposalId, uri: n.uri, state: n.state, message: n.message };
      }
      return {
        kind: "stale",
        id: n.proposalId,
        uri: n.uri,
        title: n.title ?? old?.title ?? "Kimi",
        message: n.message ?? "the code it would change was edited",
        wasLive: !!old,
      };
    }
    return { kind: "ended", id: n.proposalId, uri: n.uri, state: n.state, message: n.message };
  }

  /** Remember the instruction of a refinement the user started (shown while the server refines). */
  markRefining(id: string, instruction: string): Proposal | undefined {
    const p = this.byId.get(id);
    if (p) {
      p.refining = instruction;
    }
    return p;
  }

  /** Follow a document change; returns whether any hunk was touched (the server will tell what became of it). */
  documentChanged(uri: string, changes: readonly TextChange[]): boolean {
    let touched = false;
    for (const p of this.of(uri)) {
      const moved = rebaseProposal(p, changes);
      touched ||= moved.touched;
      this.byId.set(p.id, moved.proposal);
    }
    return touched;
  }

  /** `kimi.listProposals {uri}`'s answer: the server's current view of that document replaces ours. */
  sync(uri: string, listed: readonly ProposalNotification[]): Change[] {
    const changes: Change[] = [];
    const seen = new Set<string>();
    for (const n of listed) {
      if (n?.uri === uri) {
        seen.add(n.proposalId);
        changes.push(this.apply(n));
      }
    }
    for (const p of this.of(uri)) {
      if (!seen.has(p.id)) {
        this.byId.delete(p.id);
        changes.push({ kind: "ended", id: p.id, uri, state: "gone" });
      }
    }
    return changes;
  }
}

function isHunk(h: unknown): h is Hunk {
  const x = h as Hunk;
  return !!x && typeof x.id === "string" && !!x.range?.start && !!x.range?.end && typeof x.newText === "string";
}

export function firstLine(p: Proposal): number {
  const lines = [...(p.range ? [p.range.start.line] : []), ...p.hunks.map((h) => h.range.start.line)];
  return lines.length ? Math.min(...lines) : 0;
}

// --- line diff inside a hunk --------------------------------------------------------------------------------------

export type LineOp = { op: "eq"; old: number; new: number } | { op: "del"; old: number } | { op: "ins"; new: number };

/** A minimal line diff (LCS) of two small texts; hunks are a few lines, so O(n·m) is fine. */
export function lineDiff(oldLines: readonly string[], newLines: readonly string[]): LineOp[] {
  const n = oldLines.length;
  const m = newLines.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = oldLines[i] === newLines[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops: LineOp[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && oldLines[i] === newLines[j]) {
      ops.push({ op: "eq", old: i++, new: j++ });
    } else if (i < n && (j >= m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push({ op: "del", old: i++ });
    } else {
      ops.push({ op: "ins", new: j++ });
    }
  }
  return ops;
}

// --- what to draw -------------------------------------------------------------------------------------------------

/** Ghost text after (or, at the top of the file, before) a line: the new code beside the code it replaces. */
export interface Ghost {
  line: number;
  text: string;
  placement: "after" | "before";
  /** "replace": a removed line's replacement; "insert": lines added without removing any. */
  kind: "replace" | "insert";
}

export interface HunkPaint {
  proposalId: string;
  hunkId: string;
  /** Document lines the hunk removes (0-based). */
  removed: number[];
  ghosts: Ghost[];
  /** Lines of the document the hunk covers (for hover and "hunk at cursor"); an insertion covers its anchor. */
  firstLine: number;
  lastLine: number;
  added: number;
  deleted: number;
}

export const GHOST_MAX = 100;

function clip(text: string, max = GHOST_MAX): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function more(n: number): string {
  return n > 0 ? `  (+${n} more line${n === 1 ? "" : "s"})` : "";
}

/** The lines a hunk covers: its start line up to the line before an end at column 0. */
export function hunkLines(h: Hunk): { first: number; last: number } {
  const first = h.range.start.line;
  let last = h.range.end.line;
  if (h.range.end.character === 0 && last > first) {
    last--;
  }
  return { first, last: Math.max(first, last) };
}

/** What to draw for one hunk: removed lines marked, the new lines shown beside them. */
export function paintHunk(proposalId: string, h: Hunk, lineCount: number): HunkPaint {
  const start = h.range.start.line;
  const oldLines = splitLines(h.oldText);
  const newLines = splitLines(h.newText);
  const ops = lineDiff(oldLines, newLines);
  const removed: number[] = [];
  const ghosts: Ghost[] = [];
  // Blocks of changes between equal lines: each removed line shows the new line in its place.
  let block: { dels: number[]; ins: string[]; before: number } | undefined;
  const flush = () => {
    if (!block) {
      return;
    }
    const { dels, ins } = block;
    if (dels.length) {
      dels.forEach((old, k) => {
        const line = start + old;
        removed.push(line);
        const last = k === dels.length - 1;
        const shown = k < ins.length ? ins[k].trim() : "";
        const tail = last ? more(ins.length - dels.length) : "";
        // A removed line with no counterpart gets no ghost: its red mark says it goes.
        if (k < ins.length) {
          ghosts.push({ line, text: clip(`→ ${shown || "(blank line)"}`) + tail, placement: "after", kind: "replace" });
        }
      });
    } else if (ins.length) {
      // Added lines only: shown after the line above the insertion (before the first line at the file's top).
      const above = block.before;
      const text = clip(`+ ${ins[0].trim()}`) + more(ins.length - 1);
      if (above >= 0) {
        ghosts.push({ line: above, text, placement: "after", kind: "insert" });
      } else {
        ghosts.push({ line: Math.min(start, Math.max(0, lineCount - 1)), text, placement: "before", kind: "insert" });
      }
    }
    block = undefined;
  };
  for (const op of ops) {
    if (op.op === "eq") {
      flush();
      continue;
    }
    if (!block) {
      // The document line above this block: the line before the hunk, or the last equal line inside it.
      const prevOld = op.op === "del" ? op.old - 1 : lastOldBefore(ops, op);
      block = { dels: [], ins: [], before: start + prevOld };
    }
    if (op.op === "del") {
      block.dels.push(op.old);
    } else {
      block.ins.push(newLines[op.new]);
    }
  }
  flush();
  const { first, last } = hunkLines(h);
  return {
    proposalId,
    hunkId: h.id,
    removed,
    ghosts,
    firstLine: first,
    lastLine: oldLines.length ? last : first,
    added: ops.filter((o) => o.op === "ins").length,
    deleted: removed.length,
  };
}

/** The old line index just before an insertion op (-1: before the hunk's first line). */
function lastOldBefore(ops: readonly LineOp[], at: LineOp): number {
  let last = -1;
  for (const op of ops) {
    if (op === at) {
      break;
    }
    if (op.op !== "ins") {
      last = op.old;
    }
  }
  return last;
}

export function paintProposal(p: Proposal, lineCount: number): HunkPaint[] {
  return sortedHunks(p).map((h) => paintHunk(p.id, h, lineCount));
}

// --- code lenses ---------------------------------------------------------------------------------------------------

export interface LensItem {
  line: number;
  title: string;
  /** A kimi-vscode.* command, or "" for a label. */
  command: string;
  args?: { proposalId: string; hunkId?: string };
  tooltip?: string;
}

export const KEYS = {
  acceptChange: "Ctrl+Alt+Y",
  rejectChange: "Ctrl+Alt+N",
  acceptAll: "Ctrl+Shift+Enter",
  rejectAll: "Ctrl+Shift+Backspace",
  next: "Alt+F5",
  previous: "Shift+Alt+F5",
};

export function sortedHunks(p: Proposal): Hunk[] {
  return [...p.hunks].sort((a, b) => comparePositions(a.range.start, b.range.start));
}

/**
 * The code lenses of a live proposal: a header with the whole proposal's actions, one row per hunk. The header
 * shares its line with the first hunk's row (a lens is always above its line), so the titles are short; "Diff"
 * (reopen the side-by-side view) only while that view is closed.
 */
export function proposalLenses(p: Proposal, opts: { diffOpen?: boolean } = {}): LensItem[] {
  const hunks = sortedHunks(p);
  const headerLine = p.range ? Math.min(p.range.start.line, hunks[0]?.range.start.line ?? p.range.start.line) : hunks[0]?.range.start.line ?? 0;
  const id = { proposalId: p.id };
  const label = `Kimi: ${p.title.replace(/^Kimi:\s*/, "")}`;
  const n = p.hunks.length;
  const about = `${n} change${n === 1 ? "" : "s"} proposed by ${p.model || "Kimi"}; nothing changes until you accept`;
  if (p.state === "refining") {
    const what = p.refining ? ` “${clip(p.refining, 40)}”` : "";
    return [
      { line: headerLine, title: `$(sync~spin) ${label}: refining${what}…`, command: "", tooltip: about },
      { line: headerLine, title: "Cancel", command: "kimi-vscode.cancelRefine", args: id, tooltip: "Stop the refinement; the proposal stays as it is" },
    ];
  }
  if (!hunks.length) {
    return [];
  }
  const lenses: LensItem[] = [];
  const diff: LensItem[] = opts.diffOpen
    ? []
    : [{ line: headerLine, title: "Diff", command: "kimi-vscode.showProposalDiff", args: id, tooltip: "Show the proposal side by side" }];
  if (hunks.length === 1) {
    const h = hunks[0];
    const hid = { proposalId: p.id, hunkId: h.id };
    lenses.push(
      { line: headerLine, title: label, command: "", tooltip: about },
      { line: headerLine, title: "Accept", command: "kimi-vscode.acceptProposalChange", args: hid, tooltip: `Apply this change (${KEYS.acceptChange}; all: ${KEYS.acceptAll})` },
      { line: headerLine, title: "Reject", command: "kimi-vscode.rejectProposalChange", args: hid, tooltip: `Drop this change (${KEYS.rejectChange}; all: ${KEYS.rejectAll})` },
      { line: headerLine, title: "Refine…", command: "kimi-vscode.refineProposal", args: id, tooltip: "Tell Kimi how to change its proposal" },
      ...diff,
    );
    return lenses;
  }
  lenses.push(
    { line: headerLine, title: label, command: "", tooltip: about },
    { line: headerLine, title: "Accept All", command: "kimi-vscode.acceptProposal", args: id, tooltip: `Apply every change as one undo step (${KEYS.acceptAll})` },
    { line: headerLine, title: "Reject All", command: "kimi-vscode.rejectProposal", args: id, tooltip: `Drop the whole proposal (${KEYS.rejectAll})` },
    { line: headerLine, title: "Refine…", command: "kimi-vscode.refineProposal", args: id, tooltip: "Tell Kimi how to change its proposal" },
    ...diff,
  );
  hunks.forEach((h, i) => {
    const hid = { proposalId: p.id, hunkId: h.id };
    const line = h.range.start.line;
    lenses.push(
      { line, title: `Change ${i + 1}/${hunks.length}:`, command: "", tooltip: about },
      { line, title: "Accept", command: "kimi-vscode.acceptProposalChange", args: hid, tooltip: `Apply this change (${KEYS.acceptChange})` },
      { line, title: "Reject", command: "kimi-vscode.rejectProposalChange", args: hid, tooltip: `Drop this change (${KEYS.rejectChange})` },
    );
  });
  return lenses;
}

// --- navigation ----------------------------------------------------------------------------------------------------

export interface HunkRef {
  proposalId: string;
  hunkId: string;
  line: number;
  lastLine: number;
}

/** Every live hunk of a document's proposals, top first (refining proposals cannot be accepted: left out). */
export function documentHunks(proposals: readonly Proposal[]): HunkRef[] {
  return proposals
    .filter((p) => p.state === "ready")
    .flatMap((p) => p.hunks.map((h) => ({ proposalId: p.id, hunkId: h.id, line: h.range.start.line, lastLine: hunkLines(h).last })))
    .sort((a, b) => a.line - b.line || a.lastLine - b.lastLine);
}

/** The hunk whose lines contain `line` (an insertion: its line). */
export function hunkAt(hunks: readonly HunkRef[], line: number): HunkRef | undefined {
  return hunks.find((h) => h.line <= line && line <= h.lastLine);
}

/** The next (or previous) hunk from the cursor's line, wrapping around the document. */
export function stepHunk(hunks: readonly HunkRef[], line: number, direction: 1 | -1): HunkRef | undefined {
  if (!hunks.length) {
    return undefined;
  }
  if (direction === 1) {
    return hunks.find((h) => h.line > line) ?? hunks[0];
  }
  const current = hunkAt(hunks, line);
  const before = hunks.filter((h) => h.line < line && h !== current);
  return before[before.length - 1] ?? hunks[hunks.length - 1];
}

/** The proposal the cursor is in (its selection or a hunk), else the document's only one. */
export function proposalAt(proposals: readonly Proposal[], line: number): Proposal | undefined {
  const inside = proposals.find(
    (p) =>
      (p.range && p.range.start.line <= line && line <= Math.max(p.range.start.line, p.range.end.line)) ||
      p.hunks.some((h) => h.range.start.line <= line && line <= hunkLines(h).last),
  );
  return inside ?? (proposals.length === 1 ? proposals[0] : undefined);
}

// --- status bar and the list ---------------------------------------------------------------------------------------

export function proposalStatusText(proposals: readonly Proposal[]): string | undefined {
  if (!proposals.length) {
    return undefined;
  }
  const refining = proposals.some((p) => p.state === "refining");
  const n = proposals.length;
  return `${refining ? "$(sync~spin)" : "$(diff)"} ${n} Kimi proposal${n === 1 ? "" : "s"}`;
}

export interface ProposalPickItem {
  label: string;
  description: string;
  detail: string;
  proposalId: string;
}

/** Quick pick rows for the status bar's list: where each proposal is and what it changes. */
export function proposalPickItems(proposals: readonly Proposal[], relativePath: (uri: string) => string): ProposalPickItem[] {
  return [...proposals]
    .sort((a, b) => relativePath(a.uri).localeCompare(relativePath(b.uri)) || firstLine(a) - firstLine(b))
    .map((p) => {
      const paints = p.hunks.map((h) => paintHunk(p.id, h, Number.MAX_SAFE_INTEGER));
      const added = paints.reduce((n, x) => n + x.added, 0);
      const deleted = paints.reduce((n, x) => n + x.deleted, 0);
      const lines = p.hunks.map((h) => hunkLines(h));
      const from = lines.length ? Math.min(...lines.map((l) => l.first)) + 1 : firstLine(p) + 1;
      const to = lines.length ? Math.max(...lines.map((l) => l.last)) + 1 : from;
      const n = p.hunks.length;
      return {
        label: `$(diff) ${p.title}`,
        description: `${relativePath(p.uri)}:${from === to ? from : `${from}-${to}`}`,
        detail: `${p.state === "refining" ? "refining… · " : ""}${n} change${n === 1 ? "" : "s"}, +${added} −${deleted} lines${p.model ? ` · ${p.model}` : ""}`,
        proposalId: p.id,
      };
    });
}

/** The markdown of a hunk's hover: the change as a diff block. */
export function hunkHoverMarkdown(p: Proposal, h: Hunk): string {
  const ops = lineDiff(splitLines(h.oldText), splitLines(h.newText));
  const oldLines = splitLines(h.oldText);
  const newLines = splitLines(h.newText);
  const body = ops
    .map((o) => (o.op === "eq" ? `  ${oldLines[o.old]}` : o.op === "del" ? `- ${oldLines[o.old]}` : `+ ${newLines[o.new]}`))
    .join("\n");
  let fence = "```";
  while (body.includes(fence)) {
    fence += "`";
  }
  return `**${p.title}** proposes${p.model ? ` (${p.model})` : ""}:\n\n${fence}diff\n${body}\n${fence}\n`;
}
