/**
 * Accumulates the server's `kimi/stream` notifications into one entry per request (see docs/protocol.md).
 * No vscode import: unit-tested under plain Node.
 */

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
  cached_tokens?: number;
  [key: string]: unknown;
}

/** What an answer cost, in the account's currency; null when no price is known for the model. */
export interface Cost {
  amount: number;
  currency: string;
  note?: string;
}

/** One `kimi/stream` notification. */
export interface StreamEvent {
  requestId: string | number;
  kind: "start" | "reasoning" | "content" | "status" | "done" | string;
  action?: string;
  /** `start`: where the answer goes: "show" (prose for the panel), or an edit ("replace", "comment", …). */
  output?: string;
  model?: string;
  uri?: string;
  range?: Range;
  title?: string;
  text?: string;
  usage?: Usage | null;
  /** `done`: the cost, or null when the model has no known price. */
  cost?: Cost | null;
  /** `done`: the server's ready line, e.g. "1,234 tokens (800 cached) · $0.0012". */
  spent?: string;
  finishReason?: string | null;
  elapsedMs?: number;
  error?: ErrorInfo;
  cancelled?: boolean;
  /** `done` of a shown answer: the conversation it is a turn of. */
  threadId?: string;
}

/** kimi-lsp reports errors as `{code, message}`; a plain string is accepted too. */
export type ErrorInfo = string | { code?: string; message?: string } | null;

export function errorText(error: ErrorInfo | undefined): string | undefined {
  if (!error) {
    return undefined;
  }
  if (typeof error === "string") {
    return error;
  }
  return error.message || error.code || "failed";
}

/** The result of an action command (docs/protocol.md): it names the action and its output kind. */
export interface AnswerResult {
  requestId?: string | number;
  action?: string;
  output?: string;
  text?: string;
  reasoning?: string | null;
  model?: string;
  usage?: Usage | null;
  cost?: Cost | null;
  finishReason?: string | null;
  error?: ErrorInfo;
  cancelled?: boolean;
  /** A shown answer: its conversation and its turn (0-based) there. */
  threadId?: string;
  turn?: number;
  /** The references the question named, as the server resolved them ("lib.py:1-2", ".env (refused)"). */
  references?: string[];
  /** E.g. that the oldest follow-ups were left out to fit the model's window. */
  note?: string;
}

export interface Entry {
  requestId: string;
  action: string;
  /** The action's output kind, from `start` or the result; unknown (undefined) until one arrives. */
  output?: string;
  title: string;
  model: string;
  uri?: string;
  range?: Range;
  reasoning: string;
  content: string;
  status?: string;
  done: boolean;
  usage?: Usage | null;
  cost?: Cost | null;
  /** The server's line for the answer's end (tokens and cost), from `done`. */
  spent?: string;
  finishReason?: string | null;
  elapsedMs?: number;
  error?: string | null;
  cancelled: boolean;
  /** The conversation this answer is a turn of (from `done` or the result), and which turn. */
  threadId?: string;
  turn?: number;
  /** The question typed for this turn (a follow-up, an ask); empty for an explain. */
  question?: string;
  references?: string[];
  note?: string;
}

export class StreamStore {
  private readonly entries = new Map<string, Entry>();
  private readonly order: string[] = [];

  constructor(private readonly limit = 200) {}

  get(requestId: string | number): Entry | undefined {
    return this.entries.get(String(requestId));
  }

  /** Newest first. */
  list(): Entry[] {
    return this.order.map((id) => this.entries.get(id)!).reverse();
  }

  get running(): Entry[] {
    return this.list().filter((e) => !e.done);
  }

  /** Apply one notification; returns the entry it touched (created on first sight, even without a `start`). */
  apply(event: StreamEvent): Entry | undefined {
    if (event === null || typeof event !== "object" || event.requestId === undefined || event.requestId === null) {
      return undefined;
    }
    const entry = this.ensure(event.requestId);
    switch (event.kind) {
      case "start":
        entry.action = event.action ?? entry.action;
        entry.output = event.output ?? entry.output;
        entry.title = event.title ?? entry.title;
        entry.model = event.model ?? entry.model;
        entry.uri = event.uri ?? entry.uri;
        entry.range = event.range ?? entry.range;
        break;
      case "reasoning":
        entry.reasoning += event.text ?? "";
        break;
      case "content":
        entry.content += event.text ?? "";
        break;
      case "status":
        entry.status = event.text ?? undefined;
        break;
      case "done":
        entry.done = true;
        entry.status = undefined;
        entry.usage = event.usage ?? entry.usage;
        entry.cost = event.cost !== undefined ? event.cost : entry.cost;
        entry.spent = typeof event.spent === "string" && event.spent ? event.spent : entry.spent;
        entry.finishReason = event.finishReason ?? entry.finishReason;
        entry.elapsedMs = event.elapsedMs ?? entry.elapsedMs;
        entry.error = errorText(event.error) ?? entry.error;
        entry.cancelled = event.cancelled ?? entry.cancelled;
        entry.threadId = typeof event.threadId === "string" && event.threadId ? event.threadId : entry.threadId;
        break;
      default:
        break; // a newer server's kind: ignore, keep the entry
    }
    return entry;
  }

  /**
   * Apply the final command result. The result wins over streamed text only when no stream arrived (or it was
   * shorter: a stream that dropped deltas); the entry is then complete.
   */
  applyResult(result: AnswerResult, fallback: { action: string; title: string }): Entry {
    const id = result.requestId !== undefined && result.requestId !== null ? String(result.requestId) : `local-${Date.now()}`;
    const entry = this.ensure(id);
    if (!entry.action) {
      entry.action = result.action ?? fallback.action;
    }
    entry.output = entry.output ?? result.output;
    if (!entry.title) {
      entry.title = fallback.title;
    }
    entry.model = entry.model || result.model || "";
    if (typeof result.text === "string" && result.text.length > entry.content.length) {
      entry.content = result.text;
    }
    if (typeof result.reasoning === "string" && result.reasoning.length > entry.reasoning.length) {
      entry.reasoning = result.reasoning;
    }
    entry.usage = entry.usage ?? result.usage;
    entry.cost = entry.cost ?? result.cost;
    entry.finishReason = entry.finishReason ?? result.finishReason;
    entry.error = entry.error ?? errorText(result.error);
    entry.cancelled = entry.cancelled || result.cancelled === true;
    if (typeof result.threadId === "string" && result.threadId) {
      entry.threadId = result.threadId;
    }
    if (typeof result.turn === "number" && Number.isInteger(result.turn)) {
      entry.turn = result.turn;
    }
    if (Array.isArray(result.references)) {
      entry.references = result.references.filter((r): r is string => typeof r === "string");
    }
    if (typeof result.note === "string" && result.note) {
      entry.note = result.note;
    }
    entry.done = true;
    entry.status = undefined;
    return entry;
  }

  /**
   * Show a stored answer again, as `kimi.showExplanation` returns it (the code lens over an explained range):
   * one entry per explanation (`id`), its text replaced by the latest, made the newest. It is a snapshot, so it is
   * complete even while the explanation still streams (its title then says so).
   */
  snapshot(
    id: string,
    shot: { text?: string; model?: string; title?: string; done?: boolean },
    fallback: { action: string; uri?: string },
  ): Entry {
    const entry = this.ensure(id);
    const index = this.order.indexOf(entry.requestId);
    if (index !== this.order.length - 1) {
      this.order.splice(index, 1);
      this.order.push(entry.requestId);
    }
    entry.action = entry.action || fallback.action;
    entry.output = "show";
    entry.uri = entry.uri ?? fallback.uri;
    const title = shot.title || entry.title.replace(/ \(so far\)$/, "");
    entry.title = shot.done === false ? `${title} (so far)` : title;
    entry.model = shot.model || entry.model;
    entry.content = typeof shot.text === "string" ? shot.text : entry.content;
    entry.done = true;
    entry.status = undefined;
    entry.error = null;
    entry.cancelled = false;
    return entry;
  }

  /** Mark an entry failed (the command request itself failed). */
  fail(requestId: string | number, message: string): Entry {
    const entry = this.ensure(requestId);
    entry.done = true;
    entry.error = entry.error ?? message;
    return entry;
  }

  /**
   * A placeholder the client made for a question it sent (so the panel shows it at once), with the given
   * fields; it becomes the server's request once that is known (`rename`).
   */
  placeholder(id: string, fields: Partial<Entry>): Entry {
    const entry = this.ensure(id);
    Object.assign(entry, fields, { requestId: entry.requestId });
    return entry;
  }

  /** Give an entry the server's request id. False when there is no such entry or the new id is taken. */
  rename(from: string, to: string | number): boolean {
    const id = String(to);
    const entry = this.entries.get(from);
    if (!entry || this.entries.has(id)) {
      return false;
    }
    this.entries.delete(from);
    entry.requestId = id;
    this.entries.set(id, entry);
    this.order[this.order.indexOf(from)] = id;
    return true;
  }

  remove(id: string): void {
    if (this.entries.delete(id)) {
      this.order.splice(this.order.indexOf(id), 1);
    }
  }

  /** Add finished entries (a stored conversation's turns), replacing any with the same ids. */
  add(entries: Entry[]): void {
    for (const e of entries) {
      Object.assign(this.ensure(e.requestId), e);
    }
  }

  clear(): void {
    this.entries.clear();
    this.order.length = 0;
  }

  private ensure(requestId: string | number): Entry {
    const id = String(requestId);
    let entry = this.entries.get(id);
    if (!entry) {
      entry = { requestId: id, action: "", title: "", model: "", reasoning: "", content: "", done: false, cancelled: false };
      this.entries.set(id, entry);
      this.order.push(id);
      while (this.order.length > this.limit) {
        this.entries.delete(this.order.shift()!);
      }
    }
    return entry;
  }
}

/**
 * Whether the panel should show this entry: prose answers yes, edits no. The action's output kind alone decides
 * (from `start`, or the result): no table of action names, so custom actions and new ones need nothing here.
 */
export function isShownInPanel(entry: Entry): boolean {
  return entry.output === "show";
}

export function formatUsage(usage: Usage | null | undefined): string | undefined {
  if (!usage) {
    return undefined;
  }
  const prompt = usage.prompt_tokens ?? usage.promptTokens;
  const completion = usage.completion_tokens ?? usage.completionTokens;
  const total = usage.total_tokens ?? usage.totalTokens;
  const parts: string[] = [];
  if (typeof prompt === "number") {
    parts.push(`${prompt} in`);
  }
  if (typeof completion === "number") {
    parts.push(`${completion} out`);
  }
  if (parts.length) {
    return parts.join(" · ") + " tokens";
  }
  return typeof total === "number" ? `${total} tokens` : undefined;
}

/** How an answer ended, in tokens and money: the server's `spent` line, else the bare token counts. */
export function spentText(entry: Pick<Entry, "spent" | "usage" | "cost">): string | undefined {
  const text = entry.spent || formatUsage(entry.usage);
  const note = entry.cost && typeof entry.cost.note === "string" && entry.cost.note ? entry.cost.note : undefined;
  return text && note ? `${text} (${note})` : text;
}

/**
 * The status bar message when an answer that is not shown in the panel (an edit) ends: "Kimi: Refactor · 1,234
 * tokens · $0.0012". Nothing for failures (the server reports them itself) or a running entry.
 */
export function endMessage(entry: Entry): string | undefined {
  if (!entry.done || entry.error) {
    return undefined;
  }
  const title = entry.title || entry.action || "answer";
  const what = /^Kimi\b/.test(title) ? title : `Kimi: ${title}`;
  if (entry.cancelled) {
    return `${what}: cancelled`;
  }
  const spent = spentText(entry);
  return spent ? `${what} · ${spent}` : undefined;
}

export function formatElapsed(ms: number | undefined): string | undefined {
  if (typeof ms !== "number" || !Number.isFinite(ms)) {
    return undefined;
  }
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
