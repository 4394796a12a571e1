/**
 * HTML of the Kimi panel: the page shell and one section per answer. All model text goes through the safe
 * Markdown renderer; everything else through escapeHtml. No vscode import: unit-tested under plain Node.
 */
import { escapeHtml, renderMarkdown } from "./markdown";
import { blockIndexes } from "./thread";
import { Entry, formatElapsed, spentText } from "./stream";

const ACTION_TITLES: Record<string, string> = {
  explain: "Explain",
  ask: "Ask",
  refactor: "Refactor",
  fix: "Fix",
  document: "Add docs",
};

function basename(uri: string): string {
  const clean = uri.split(/[?#]/)[0];
  try {
    return decodeURIComponent(clean.slice(clean.lastIndexOf("/") + 1));
  } catch {
    return clean.slice(clean.lastIndexOf("/") + 1);
  }
}

/** The server's title ("Kimi: Explain") or the action's, plus where: "Kimi: Explain · a.py:3-4". */
export function entryTitle(entry: Entry): string {
  const action = entry.title || ACTION_TITLES[entry.action] || entry.action || "Kimi";
  if (!entry.uri) {
    return action;
  }
  let where = basename(entry.uri);
  if (entry.range) {
    const first = entry.range.start.line + 1;
    const last = entry.range.end.line + (entry.range.end.character === 0 && entry.range.end.line > entry.range.start.line ? 0 : 1);
    where += first === last ? `:${first}` : `:${first}-${last}`;
  }
  return `${action} · ${where}`;
}

/** Where "Apply" sends a code block: the thread and turn of a finished answer, if the thread has code to edit. */
export interface ApplyTarget {
  threadId: string;
  turn: number;
}

/** The answer text, its fenced blocks numbered as the server numbers them, each with an "Apply" button. */
export function renderAnswer(content: string, apply?: ApplyTarget): string {
  if (!apply) {
    return renderMarkdown(content);
  }
  // First pass: the texts of the blocks as the renderer sees them; then the server's index of each.
  const bodies: string[] = [];
  const closed: boolean[] = [];
  renderMarkdown(content, (code, _lang, html, isClosed) => {
    bodies.push(code);
    closed.push(isClosed);
    return html;
  });
  const indexes = blockIndexes(content, bodies);
  let n = 0;
  return renderMarkdown(content, (_code, _lang, html) => {
    const i = n++;
    const block = indexes[i];
    if (block === undefined || !closed[i]) {
      return html;
    }
    const data =
      `data-apply-thread="${escapeHtml(apply.threadId)}" data-apply-turn="${apply.turn}" data-apply-block="${block}"`;
    return (
      `<div class="code">${html}<button class="apply" ${data} ` +
      `title="Apply this code to the code the conversation started from, as a proposal">Apply</button></div>`
    );
  });
}

/** One turn of a conversation: the question, what it referenced, the server's note, the reasoning, the answer. */
export function renderTurn(entry: Entry, opts: { canApply?: boolean } = {}): string {
  const id = escapeHtml(entry.requestId);
  const parts: string[] = [];
  const running = !entry.done;
  if (entry.question) {
    parts.push(`<div class="question"><span class="who">You</span> ${escapeHtml(entry.question)}</div>`);
  }
  if (entry.references?.length) {
    parts.push(`<div class="refs">References: ${escapeHtml(entry.references.join(", "))}</div>`);
  }
  if (entry.note) {
    parts.push(`<div class="note">${escapeHtml(entry.note)}</div>`);
  }
  parts.push(
    `<div class="turn-head">` +
      (entry.model ? `<span class="model">${escapeHtml(entry.model)}</span>` : "") +
      (running ? `<button class="stop" data-cancel="${id}" title="Cancel this request">Stop</button>` : "") +
      `</div>`,
  );
  if (entry.reasoning) {
    const summary = running && !entry.content ? "Thinking…" : "Reasoning";
    parts.push(
      `<details class="reasoning"><summary>${summary}</summary><div class="md">${renderMarkdown(entry.reasoning)}</div></details>`,
    );
  }
  if (entry.content) {
    const apply =
      opts.canApply && entry.done && entry.threadId && typeof entry.turn === "number"
        ? { threadId: entry.threadId, turn: entry.turn }
        : undefined;
    parts.push(`<div class="content md">${renderAnswer(entry.content, apply)}</div>`);
  } else if (running) {
    parts.push(`<div class="waiting">${entry.reasoning ? "Thinking…" : "Waiting for Kimi…"}</div>`);
  }
  if (running && entry.status) {
    parts.push(`<div class="status">${escapeHtml(entry.status)}</div>`);
  }
  if (entry.error) {
    parts.push(`<div class="error">${escapeHtml(entry.error)}</div>`);
  }
  const footer = [
    entry.cancelled ? "cancelled" : undefined,
    spentText(entry),
    formatElapsed(entry.elapsedMs),
    entry.finishReason && entry.finishReason !== "stop" ? `finish: ${entry.finishReason}` : undefined,
  ].filter((x): x is string => !!x);
  if (entry.done && footer.length) {
    parts.push(`<footer>${escapeHtml(footer.join(" · "))}</footer>`);
  }
  return `<article class="turn${running ? " running" : ""}" data-turn-id="${id}">\n${parts.join("\n")}\n</article>`;
}

export const FOLLOW_UP_HINT = "Ask a follow-up… (#file:path, #selection, #diagnostics, #symbol:name; Enter sends)";

/**
 * A conversation: its title, its turns in order and, once the last answer is in and it has a thread, a box for
 * a follow-up. `key` is the panel's id of the conversation (its first answer's request id): request ids are
 * arbitrary strings, so they go in data attributes, never in `id`.
 */
export function renderConversation(key: string, turns: Entry[]): string {
  const first = turns[0];
  if (!first) {
    return "";
  }
  const running = turns.some((t) => !t.done);
  const threadId = turns.find((t) => t.threadId)?.threadId;
  // Apply edits the code the conversation started from: only a thread that started from a file has some.
  const canApply = !!threadId && !!first.uri;
  const parts = [`<header><span class="title">${escapeHtml(entryTitle(first))}</span></header>`];
  parts.push(`<div class="turns">\n${turns.map((t) => renderTurn(t, { canApply })).join("\n")}\n</div>`);
  if (threadId && !running) {
    parts.push(
      `<div class="follow-up" data-thread="${escapeHtml(threadId)}">` +
        `<textarea rows="2" aria-label="Follow-up question" placeholder="${escapeHtml(FOLLOW_UP_HINT)}"></textarea>` +
        `<button class="send" title="Send the follow-up (Enter)">Send</button></div>`,
    );
  }
  const thread = threadId ? ` data-thread="${escapeHtml(threadId)}"` : "";
  return `<section class="entry${running ? " running" : ""}" data-id="${escapeHtml(key)}"${thread}>\n${parts.join("\n")}\n</section>`;
}

/** One answer on its own (a conversation of one turn). */
export function renderEntry(entry: Entry): string {
  return renderConversation(entry.requestId, [entry]);
}

/** The page: a strict CSP, no inline script but the nonce'd one, VS Code theme colours. */
export function renderPage(opts: { cspSource: string; nonce: string; body: string }): string {
  const { cspSource, nonce, body } = opts;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${cspSource} https: data:; style-src ${cspSource} 'nonce-${nonce}'; script-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Kimi</title>
<style nonce="${nonce}">
body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); padding: 0 12px 24px; line-height: 1.5; }
.toolbar { position: sticky; top: 0; background: var(--vscode-editor-background); padding: 6px 0; display: flex; gap: 6px; justify-content: flex-end; z-index: 2; }
button { font-family: inherit; font-size: 0.9em; color: var(--vscode-button-secondaryForeground); background: var(--vscode-button-secondaryBackground); border: none; padding: 2px 8px; border-radius: 2px; cursor: pointer; }
button:hover { background: var(--vscode-button-secondaryHoverBackground); }
button.send { color: var(--vscode-button-foreground); background: var(--vscode-button-background); }
button.send:hover { background: var(--vscode-button-hoverBackground); }
.entry { border-bottom: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 8px 0 12px; }
.entry > header { display: flex; align-items: baseline; gap: 8px; margin-bottom: 4px; }
.entry .title { font-weight: 600; }
.entry.running .title::after { content: " …"; }
.turn { padding: 2px 0 6px; }
.turn + .turn { border-top: 1px dashed var(--vscode-panel-border, rgba(128,128,128,.25)); padding-top: 8px; }
.turn-head { display: flex; align-items: baseline; gap: 8px; }
.turn .model { opacity: .7; font-size: .9em; }
.turn .stop { margin-left: auto; }
.question { margin: 2px 0 4px; padding: 4px 8px; border-radius: 3px; background: var(--vscode-textBlockQuote-background); white-space: pre-wrap; }
.question .who { font-weight: 600; margin-right: 4px; }
.refs, .note { opacity: .75; font-size: .9em; }
.note { font-style: italic; }
.waiting, .status { opacity: .7; font-style: italic; }
.error { color: var(--vscode-errorForeground); white-space: pre-wrap; }
footer { opacity: .6; font-size: .85em; margin-top: 6px; }
details.reasoning { margin: 4px 0 8px; padding: 2px 8px; border-left: 2px solid var(--vscode-textBlockQuote-border, #888); opacity: .85; }
details.reasoning summary { cursor: pointer; opacity: .8; }
.code { position: relative; }
.code button.apply { position: absolute; top: 4px; right: 4px; }
.md pre { background: var(--vscode-textCodeBlock-background); padding: 8px; overflow-x: auto; border-radius: 3px; }
.md code { font-family: var(--vscode-editor-font-family); font-size: var(--vscode-editor-font-size); }
.md :not(pre) > code { background: var(--vscode-textCodeBlock-background); padding: 0 3px; border-radius: 3px; }
.md blockquote { margin: 0; padding-left: 10px; border-left: 3px solid var(--vscode-textBlockQuote-border); background: var(--vscode-textBlockQuote-background); }
.md table { border-collapse: collapse; }
.md th, .md td { border: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 2px 6px; }
.md a { color: var(--vscode-textLink-foreground); }
.follow-up, #new-conversation { position: relative; display: flex; gap: 6px; align-items: flex-end; margin-top: 8px; }
#new-conversation { margin: 4px 0 8px; }
#new-conversation[hidden] { display: none; }
textarea { flex: 1; font-family: inherit; font-size: inherit; color: var(--vscode-input-foreground); background: var(--vscode-input-background); border: 1px solid var(--vscode-input-border, transparent); border-radius: 2px; padding: 4px 6px; resize: vertical; }
textarea:focus { outline: 1px solid var(--vscode-focusBorder); }
.suggest { position: absolute; left: 0; bottom: 100%; z-index: 3; margin: 0; padding: 2px 0; list-style: none; max-height: 12em; overflow-y: auto; min-width: 50%; background: var(--vscode-editorSuggestWidget-background, var(--vscode-editor-background)); border: 1px solid var(--vscode-editorSuggestWidget-border, rgba(128,128,128,.5)); }
.suggest li { padding: 1px 8px; cursor: pointer; font-family: var(--vscode-editor-font-family); }
.suggest li.active { background: var(--vscode-editorSuggestWidget-selectedBackground, var(--vscode-list-activeSelectionBackground)); }
.empty { opacity: .7; margin-top: 24px; }
</style>
</head>
<body>
<div class="toolbar"><button id="new" title="Ask a question in a new conversation">New conversation</button><button id="clear" title="Remove all answers from the panel (stored conversations stay: Kimi: Open Conversation…)">Clear</button></div>
<div id="new-conversation" hidden><textarea rows="2" aria-label="New question" placeholder="Ask Kimi… (#file:path, #diagnostics, #symbol:name; Enter sends)"></textarea><button class="send" title="Ask (Enter)">Ask</button></div>
<div id="entries">${body || EMPTY}</div>
<script nonce="${nonce}">
(function () {
  const vscode = acquireVsCodeApi();
  const list = document.getElementById("entries");
  const fresh = document.getElementById("new-conversation");
  let files = undefined; // workspace paths for #file: suggestions, asked for on first use
  let wantFiles = false;
  function find(id) {
    for (const el of list.querySelectorAll("section.entry")) { if (el.dataset.id === id) return el; }
    return undefined;
  }
  function keepState(old, next) {
    // Reasoning the user opened stays open; a follow-up being typed (and its focus) survives the re-render.
    for (const turn of old.querySelectorAll("article.turn")) {
      if (!turn.querySelector("details.reasoning")?.open) continue;
      for (const t of next.querySelectorAll("article.turn")) {
        if (t.dataset.turnId === turn.dataset.turnId) t.querySelector("details.reasoning")?.setAttribute("open", "");
      }
    }
    const oldBox = old.querySelector(".follow-up");
    const newBox = next.querySelector(".follow-up");
    const ta = oldBox?.querySelector("textarea");
    // (a box whose question was sent is disabled: the fresh one replaces it)
    if (oldBox && newBox && ta && !ta.disabled && oldBox.dataset.thread === newBox.dataset.thread) {
      const focused = document.activeElement === ta;
      const a = ta.selectionStart, b = ta.selectionEnd;
      newBox.replaceWith(oldBox);
      return () => { if (focused) { ta.focus(); ta.setSelectionRange(a, b); } };
    }
    return () => {};
  }
  window.addEventListener("message", (event) => {
    const msg = event.data;
    if (msg.type === "upsert") {
      const tpl = document.createElement("template");
      tpl.innerHTML = msg.html;
      const next = tpl.content.firstElementChild;
      const old = find(msg.id);
      if (old && !msg.top) {
        const restore = keepState(old, next);
        old.replaceWith(next);
        restore();
      } else {
        const restore = old ? keepState(old, next) : () => {};
        old?.remove();
        list.querySelector(".empty")?.remove();
        list.prepend(next);
        restore();
        window.scrollTo(0, 0);
      }
      if (msg.focus) next.querySelector(".follow-up textarea")?.focus();
    } else if (msg.type === "rename") {
      const el = find(msg.from);
      if (el) el.dataset.id = msg.to;
    } else if (msg.type === "remove") {
      find(msg.id)?.remove();
    } else if (msg.type === "clear") {
      list.innerHTML = "";
    } else if (msg.type === "files") {
      files = Array.isArray(msg.files) ? msg.files : [];
      if (document.activeElement instanceof HTMLTextAreaElement) suggest(document.activeElement);
    } else if (msg.type === "newConversation") {
      fresh.hidden = false;
      fresh.querySelector("textarea").focus();
    }
  });
  function send(box) {
    const ta = box.querySelector("textarea");
    const prompt = ta.value.trim();
    if (!prompt) return;
    closeSuggest();
    if (box === fresh) {
      vscode.postMessage({ type: "ask", prompt });
      ta.value = "";
      fresh.hidden = true;
    } else {
      vscode.postMessage({ type: "followUp", threadId: box.dataset.thread, prompt });
      ta.value = "";
      ta.disabled = true;
    }
  }
  // #file: suggestions: the word before the caret, matched against the workspace's paths.
  let menu = undefined;
  function closeSuggest() { menu?.remove(); menu = undefined; }
  function reference(ta) {
    const before = ta.value.slice(0, ta.selectionStart);
    const m = /(^|\\s)#([a-z]*)(?::([^\\s]*))?$/.exec(before);
    if (!m) return undefined;
    return { start: before.length - m[0].length + m[1].length, word: m[2], path: m[3], typedColon: m[3] !== undefined };
  }
  function suggest(ta) {
    closeSuggest();
    const ref = reference(ta);
    if (!ref) return;
    let items;
    if (!ref.typedColon) {
      items = ["#file:", "#selection", "#diagnostics", "#symbol:"].filter((w) => w.startsWith("#" + ref.word) && w !== "#" + ref.word);
    } else if (ref.word === "file") {
      if (files === undefined) {
        if (!wantFiles) { wantFiles = true; vscode.postMessage({ type: "needFiles" }); }
        return;
      }
      const q = ref.path.toLowerCase();
      items = files.filter((f) => f.toLowerCase().includes(q)).sort((a, b) => (a.toLowerCase().startsWith(q) ? 0 : 1) - (b.toLowerCase().startsWith(q) ? 0 : 1) || a.length - b.length).slice(0, 12).map((f) => "#file:" + f);
    } else {
      return;
    }
    if (!items.length) return;
    menu = document.createElement("ul");
    menu.className = "suggest";
    menu.setAttribute("role", "listbox");
    items.forEach((text, i) => {
      const li = document.createElement("li");
      li.textContent = text;
      li.dataset.insert = text;
      li.setAttribute("role", "option");
      if (i === 0) li.classList.add("active");
      menu.appendChild(li);
    });
    menu.target = ta;
    ta.parentElement.appendChild(menu);
  }
  function accept(li) {
    const ta = menu.target;
    const ref = reference(ta);
    if (!ref) return closeSuggest();
    const text = li.dataset.insert;
    const rest = ta.value.slice(ta.selectionStart);
    const tail = text.endsWith(":") ? "" : " ";
    ta.value = ta.value.slice(0, ref.start) + text + tail + rest;
    const caret = ref.start + text.length + tail.length;
    ta.setSelectionRange(caret, caret);
    ta.focus();
    closeSuggest();
    if (text.endsWith(":")) suggest(ta);
  }
  document.addEventListener("input", (event) => {
    if (event.target instanceof HTMLTextAreaElement) suggest(event.target);
  });
  document.addEventListener("keydown", (event) => {
    const ta = event.target;
    if (!(ta instanceof HTMLTextAreaElement)) return;
    if (menu && menu.target === ta) {
      const items = [...menu.querySelectorAll("li")];
      const at = items.findIndex((li) => li.classList.contains("active"));
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        items[at]?.classList.remove("active");
        const next = (at + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
        items[next].classList.add("active");
        items[next].scrollIntoView({ block: "nearest" });
        return;
      }
      if (event.key === "Tab" || (event.key === "Enter" && !event.shiftKey)) {
        event.preventDefault();
        accept(items[Math.max(at, 0)]);
        return;
      }
      if (event.key === "Escape") { event.preventDefault(); closeSuggest(); return; }
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send(ta.parentElement);
    } else if (event.key === "Escape" && ta.parentElement === fresh) {
      fresh.hidden = true;
    }
  });
  document.addEventListener("focusout", (event) => {
    if (menu && event.target === menu.target) setTimeout(() => { if (document.activeElement !== menu?.target) closeSuggest(); }, 150);
  });
  document.addEventListener("mousedown", (event) => {
    const li = event.target instanceof Element ? event.target.closest(".suggest li") : null;
    if (li) { event.preventDefault(); accept(li); }
  });
  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement)) return;
    if (target.dataset.cancel !== undefined) vscode.postMessage({ type: "cancel", requestId: target.dataset.cancel });
    if (target.dataset.applyThread !== undefined) {
      vscode.postMessage({ type: "apply", threadId: target.dataset.applyThread, turn: Number(target.dataset.applyTurn), block: Number(target.dataset.applyBlock) });
    }
    if (target.classList.contains("send")) send(target.parentElement);
    if (target.id === "clear") vscode.postMessage({ type: "clear" });
    if (target.id === "new") { fresh.hidden = false; fresh.querySelector("textarea").focus(); }
  });
})();
</script>
</body>
</html>`;
}

const EMPTY =
  '<p class="empty">Select code and run <b>Kimi: Explain Selection</b>, or <b>Ask Kimi…</b>; ' +
  "<b>New conversation</b> asks here, <b>Kimi: Open Conversation…</b> brings back an earlier one.</p>";
