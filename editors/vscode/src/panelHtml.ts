/**
 * HTML of the Kimi panel: the page shell and one section per answer. All model text goes through the safe
 * Markdown renderer; everything else through escapeHtml. No vscode import: unit-tested under plain Node.
 */
import { escapeHtml, renderMarkdown } from "./markdown";
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

/** One answer. `id` attributes are not used: request ids are arbitrary strings, so they go in data-id. */
export function renderEntry(entry: Entry): string {
  const id = escapeHtml(entry.requestId);
  const parts: string[] = [];
  const running = !entry.done;
  parts.push(
    `<header><span class="title">${escapeHtml(entryTitle(entry))}</span>` +
      (entry.model ? `<span class="model">${escapeHtml(entry.model)}</span>` : "") +
      (running ? `<button class="stop" data-cancel="${id}" title="Cancel this request">Stop</button>` : "") +
      `</header>`,
  );
  if (entry.reasoning) {
    const summary = running && !entry.content ? "Thinking…" : "Reasoning";
    parts.push(
      `<details class="reasoning"><summary>${summary}</summary><div class="md">${renderMarkdown(entry.reasoning)}</div></details>`,
    );
  }
  if (entry.content) {
    parts.push(`<div class="content md">${renderMarkdown(entry.content)}</div>`);
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
  return `<section class="entry${running ? " running" : ""}" data-id="${id}">\n${parts.join("\n")}\n</section>`;
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
.toolbar { position: sticky; top: 0; background: var(--vscode-editor-background); padding: 6px 0; display: flex; gap: 6px; justify-content: flex-end; z-index: 1; }
button { font-family: inherit; font-size: 0.9em; color: var(--vscode-button-secondaryForeground); background: var(--vscode-button-secondaryBackground); border: none; padding: 2px 8px; border-radius: 2px; cursor: pointer; }
button:hover { background: var(--vscode-button-secondaryHoverBackground); }
.entry { border-bottom: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 8px 0 12px; }
.entry header { display: flex; align-items: baseline; gap: 8px; margin-bottom: 4px; }
.entry .title { font-weight: 600; }
.entry .model { opacity: .7; font-size: .9em; }
.entry .stop { margin-left: auto; }
.entry.running .title::after { content: " …"; }
.waiting, .status { opacity: .7; font-style: italic; }
.error { color: var(--vscode-errorForeground); white-space: pre-wrap; }
footer { opacity: .6; font-size: .85em; margin-top: 6px; }
details.reasoning { margin: 4px 0 8px; padding: 2px 8px; border-left: 2px solid var(--vscode-textBlockQuote-border, #888); opacity: .85; }
details.reasoning summary { cursor: pointer; opacity: .8; }
.md pre { background: var(--vscode-textCodeBlock-background); padding: 8px; overflow-x: auto; border-radius: 3px; }
.md code { font-family: var(--vscode-editor-font-family); font-size: var(--vscode-editor-font-size); }
.md :not(pre) > code { background: var(--vscode-textCodeBlock-background); padding: 0 3px; border-radius: 3px; }
.md blockquote { margin: 0; padding-left: 10px; border-left: 3px solid var(--vscode-textBlockQuote-border); background: var(--vscode-textBlockQuote-background); }
.md table { border-collapse: collapse; }
.md th, .md td { border: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 2px 6px; }
.md a { color: var(--vscode-textLink-foreground); }
.empty { opacity: .7; margin-top: 24px; }
</style>
</head>
<body>
<div class="toolbar"><button id="clear" title="Remove all answers">Clear</button></div>
<div id="entries">${body || '<p class="empty">Select code and run <b>Kimi: Explain Selection</b>, or <b>Ask Kimi…</b>.</p>'}</div>
<script nonce="${nonce}">
(function () {
  const vscode = acquireVsCodeApi();
  const list = document.getElementById("entries");
  function find(id) {
    for (const el of list.querySelectorAll("section.entry")) { if (el.dataset.id === id) return el; }
    return undefined;
  }
  window.addEventListener("message", (event) => {
    const msg = event.data;
    if (msg.type === "upsert") {
      const tpl = document.createElement("template");
      tpl.innerHTML = msg.html;
      const fresh = tpl.content.firstElementChild;
      const old = find(msg.id);
      if (old && !msg.top) {
        const wasOpen = old.querySelector("details.reasoning")?.open;
        const d = fresh.querySelector("details.reasoning");
        if (d && wasOpen) d.open = true;
        old.replaceWith(fresh);
      } else {
        old?.remove();
        list.querySelector(".empty")?.remove();
        list.prepend(fresh);
        window.scrollTo(0, 0);
      }
    } else if (msg.type === "clear") {
      list.innerHTML = "";
    }
  });
  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement)) return;
    if (target.dataset.cancel !== undefined) vscode.postMessage({ type: "cancel", requestId: target.dataset.cancel });
    if (target.id === "clear") vscode.postMessage({ type: "clear" });
  });
})();
</script>
</body>
</html>`;
}
