/**
 * Conversations (threads) in the Kimi panel: which answers belong together, the server's code-block numbering
 * for "Apply" (`kimi.applyFromThread {threadId, turn, block}`), a stored thread (`kimi.thread`) as panel
 * entries, and the "Open Conversation…" pick. No vscode import: unit-tested under plain Node.
 */
import { Cost, Entry, Usage } from "./stream";

/** `kimi.threads`' rows. */
export interface ThreadSummary {
  threadId: string;
  title?: string;
  model?: string;
  uri?: string | null;
  turns?: number;
  updated?: number;
}

/** One turn of `kimi.thread`. */
export interface ThreadTurn {
  question?: string;
  answer?: string;
  reasoning?: string | null;
  model?: string;
  references?: string[];
  note?: string;
  usage?: Usage | null;
  cost?: Cost | null;
  at?: number;
}

/** `kimi.thread`'s result: the summary, the action it started from and its turns. */
export interface ThreadDetail extends Omit<ThreadSummary, "turns"> {
  action?: string;
  turns?: ThreadTurn[];
}

/**
 * The code blocks of an answer as the server numbers them for `kimi.applyFromThread` (core/threads.py `_BLOCK`):
 * a fence of 3+ backticks or tildes at the start of a line, closed by the same fence alone on a line. Each block's
 * text ends with its last line's newline.
 */
export function codeBlocks(answer: string): string[] {
  const re = /^(`{3,}|~{3,})[^\n]*\n([\s\S]*?)^\1[ \t]*$/gm;
  const out: string[] = [];
  for (let m = re.exec(answer); m; m = re.exec(answer)) {
    out.push(m[2]);
  }
  return out;
}

/**
 * For each fenced block the panel renders (their texts, in order, without the final newline), the server's index
 * of that block, or undefined where the server would not find one (an indented fence, a fence still open): the
 * two parsers differ at the edges, and "Apply" must never send the wrong block.
 */
export function blockIndexes(answer: string, rendered: string[]): (number | undefined)[] {
  const server = codeBlocks(answer.replace(/\r\n?/g, "\n"));
  let next = 0;
  return rendered.map((body) => {
    for (let j = next; j < server.length; j++) {
      if (server[j] === `${body}\n` || (body === "" && server[j] === "")) {
        next = j + 1;
        return j;
      }
    }
    return undefined;
  });
}

/**
 * Which panel conversation an answer is shown in: its thread's first answer in the panel (a stable key: a
 * first answer learns its thread only when it ends). Answers without a thread stand alone.
 */
export class ConversationIndex {
  private readonly keys = new Map<string, string>();

  keyOf(entry: Pick<Entry, "requestId" | "threadId">): string {
    if (!entry.threadId) {
      return entry.requestId;
    }
    let key = this.keys.get(entry.threadId);
    if (!key) {
      key = entry.requestId;
      this.keys.set(entry.threadId, key);
    }
    return key;
  }

  /** The panel key of a thread already shown, if any. */
  shown(threadId: string): string | undefined {
    return this.keys.get(threadId);
  }

  forget(threadId: string): void {
    this.keys.delete(threadId);
  }

  clear(): void {
    this.keys.clear();
  }

  /** The entries shown under `key`, in turn order (a running follow-up, whose turn is not known yet, last). */
  members(key: string, entries: Entry[]): Entry[] {
    const seq = new Map(entries.map((e, i) => [e.requestId, i]));
    return entries
      .filter((e) => this.keyOf(e) === key)
      .sort((a, b) => (a.turn ?? Infinity) - (b.turn ?? Infinity) || seq.get(a.requestId)! - seq.get(b.requestId)!);
  }
}

/** A stored thread's turns as finished panel entries, ids `thread:<id>:<turn>`, oldest first. */
export function threadEntries(thread: ThreadDetail): Entry[] {
  const turns = Array.isArray(thread.turns) ? thread.turns : [];
  return turns.map((t, i) => ({
    requestId: `thread:${thread.threadId}:${i}`,
    action: thread.action ?? "ask",
    output: "show",
    title: i === 0 ? thread.title ?? "" : "",
    model: t.model ?? thread.model ?? "",
    uri: thread.uri ?? undefined,
    reasoning: t.reasoning ?? "",
    content: t.answer ?? "",
    done: true,
    usage: t.usage,
    cost: t.cost,
    cancelled: false,
    threadId: thread.threadId,
    turn: i,
    question: t.question ?? "",
    references: Array.isArray(t.references) ? t.references : [],
    note: t.note ?? "",
  }));
}

/** "3 turns · kimi-k2.5 · a.py · 5 min ago": the quick pick row of a past conversation. */
export function threadPickItems(
  threads: ThreadSummary[],
  now: number,
): { label: string; description: string; threadId: string }[] {
  return threads
    .filter((t) => t && typeof t.threadId === "string")
    .map((t) => {
      const turns = typeof t.turns === "number" ? `${t.turns} turn${t.turns === 1 ? "" : "s"}` : undefined;
      const file = t.uri ? fileName(t.uri) : undefined;
      const when = typeof t.updated === "number" ? ago(now - t.updated * 1000) : undefined;
      return {
        label: t.title || t.threadId,
        description: [turns, t.model, file, when].filter((x): x is string => !!x).join(" · "),
        threadId: t.threadId,
      };
    });
}

export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) {
    return "just now";
  }
  const m = Math.round(s / 60);
  if (m < 60) {
    return `${m} min ago`;
  }
  const h = Math.round(m / 60);
  if (h < 48) {
    return `${h} h ago`;
  }
  return `${Math.round(h / 24)} days ago`;
}

function fileName(uri: string): string {
  const clean = uri.split(/[?#]/)[0];
  const base = clean.slice(clean.lastIndexOf("/") + 1);
  try {
    return decodeURIComponent(base);
  } catch {
    return base;
  }
}
