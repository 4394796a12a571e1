import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { entryTitle, renderEntry, renderPage } from "../src/panelHtml";
import { StreamStore } from "../src/stream";

const range = { start: { line: 2, character: 0 }, end: { line: 4, character: 0 } };

describe("renderEntry", () => {
  it("renders a finished answer: markdown content, reasoning collapsed, footer", () => {
    const store = new StreamStore();
    store.apply({ requestId: "r1", kind: "start", action: "explain", model: "kimi-k2-thinking", uri: "file:///p/a.py", range });
    store.apply({ requestId: "r1", kind: "reasoning", text: "hmm" });
    store.apply({ requestId: "r1", kind: "content", text: "It **adds**." });
    const html = renderEntry(store.apply({ requestId: "r1", kind: "done", usage: { prompt_tokens: 3, completion_tokens: 4 }, elapsedMs: 2000 })!);
    assert.match(html, /<details class="reasoning"><summary>Reasoning<\/summary>/);
    assert.ok(!/<details[^>]*open/.test(html), "reasoning starts collapsed");
    assert.match(html, /It <strong>adds<\/strong>\./);
    assert.match(html, /Explain · a\.py:3-4/);
    assert.match(html, /3 in · 4 out tokens · 2\.0 s/);
    assert.ok(!html.includes("Stop"), "no stop button once done");
  });

  it("the footer shows the server's spent line (tokens, cost) instead of the bare counts", () => {
    const store = new StreamStore();
    store.apply({ requestId: "c", kind: "start", action: "explain", output: "show" });
    store.apply({ requestId: "c", kind: "content", text: "ok" });
    const html = renderEntry(
      store.apply({
        requestId: "c",
        kind: "done",
        usage: { prompt_tokens: 1000, completion_tokens: 234, total_tokens: 1234, cached_tokens: 800 },
        cost: { amount: 0.0012, currency: "USD" },
        spent: "1,234 tokens (800 cached) · $0.0012",
        elapsedMs: 1500,
      })!,
    );
    assert.match(html, /<footer>1,234 tokens \(800 cached\) · \$0\.0012 · 1\.5 s<\/footer>/);
  });

  it("a queued request shows the server's status while it waits", () => {
    const store = new StreamStore();
    store.apply({ requestId: "w", kind: "start", action: "ask", output: "show" });
    const html = renderEntry(store.apply({ requestId: "w", kind: "status", text: "queued: rate limit, retrying in 4 s" })!);
    assert.match(html, /<div class="status">queued: rate limit, retrying in 4 s<\/div>/);
  });

  it("a running answer has a stop button, a status line and a thinking summary", () => {
    const store = new StreamStore();
    store.apply({ requestId: "r2", kind: "start", action: "ask" });
    store.apply({ requestId: "r2", kind: "reasoning", text: "x" });
    const html = renderEntry(store.apply({ requestId: "r2", kind: "status", text: "reading a.py" })!);
    assert.match(html, /data-cancel="r2"/);
    assert.match(html, /<summary>Thinking…<\/summary>/);
    assert.match(html, /reading a\.py/);
  });

  it("escapes request ids, titles, errors and statuses", () => {
    const store = new StreamStore();
    store.apply({ requestId: '"><img>', kind: "start", title: "<b>t</b>", model: "<m>" });
    const html = renderEntry(store.apply({ requestId: '"><img>', kind: "done", error: "<script>x</script>" })!);
    assert.ok(!/<img|<b>|<m>|<script/.test(html), html);
  });

  it("entryTitle", () => {
    const store = new StreamStore();
    const e = store.apply({ requestId: "t", kind: "start", action: "fix", uri: "file:///p/my%20file.py", range: { start: { line: 0, character: 0 }, end: { line: 0, character: 5 } } })!;
    assert.equal(entryTitle(e), "Fix · my file.py:1");
    e.title = "Kimi: Fix";
    assert.equal(entryTitle(e), "Kimi: Fix · my file.py:1");
    e.uri = undefined;
    assert.equal(entryTitle(e), "Kimi: Fix");
  });
});

describe("renderPage", () => {
  it("has a strict CSP with the nonce on script and style", () => {
    const html = renderPage({ cspSource: "vscode-webview://x", nonce: "N0nce", body: "" });
    assert.match(html, /default-src 'none'/);
    assert.match(html, /script-src 'nonce-N0nce'/);
    assert.match(html, /<script nonce="N0nce">/);
    assert.match(html, /<style nonce="N0nce">/);
    assert.ok(!html.includes("unsafe-inline"));
  });
});
