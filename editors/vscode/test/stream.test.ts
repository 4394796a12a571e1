import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { endMessage, formatElapsed, formatUsage, isShownInPanel, spentText, StreamEvent, StreamStore } from "../src/stream";

const range = { start: { line: 2, character: 0 }, end: { line: 4, character: 0 } };

function feed(store: StreamStore, events: StreamEvent[]) {
  for (const e of events) {
    store.apply(e);
  }
}

describe("StreamStore", () => {
  it("accumulates one request from start to done", () => {
    const store = new StreamStore();
    feed(store, [
      { requestId: "r1", kind: "start", action: "explain", model: "kimi-k2.5", uri: "file:///a.py", range, title: "Explain a.py:3-4" },
      { requestId: "r1", kind: "reasoning", text: "Let me " },
      { requestId: "r1", kind: "reasoning", text: "think." },
      { requestId: "r1", kind: "status", text: "reading a.py:1-80" },
      { requestId: "r1", kind: "content", text: "It " },
      { requestId: "r1", kind: "content", text: "adds." },
    ]);
    const running = store.get("r1")!;
    assert.equal(running.done, false);
    assert.equal(running.status, "reading a.py:1-80");
    assert.deepEqual(store.running.map((e) => e.requestId), ["r1"]);
    store.apply({ requestId: "r1", kind: "done", usage: { prompt_tokens: 10, completion_tokens: 5 }, finishReason: "stop", elapsedMs: 1234 });
    const e = store.get("r1")!;
    assert.equal(e.reasoning, "Let me think.");
    assert.equal(e.content, "It adds.");
    assert.equal(e.model, "kimi-k2.5");
    assert.equal(e.title, "Explain a.py:3-4");
    assert.equal(e.done, true);
    assert.equal(e.status, undefined);
    assert.equal(e.elapsedMs, 1234);
    assert.deepEqual(store.running, []);
  });

  it("keeps interleaved requests apart, numeric ids included", () => {
    const store = new StreamStore();
    feed(store, [
      { requestId: 1, kind: "start", action: "explain" },
      { requestId: "2", kind: "start", action: "ask" },
      { requestId: 1, kind: "content", text: "one" },
      { requestId: "2", kind: "content", text: "two" },
      { requestId: "1", kind: "content", text: "!" },
    ]);
    assert.equal(store.get(1)!.content, "one!");
    assert.equal(store.get(2)!.content, "two");
    assert.deepEqual(store.list().map((e) => e.requestId), ["2", "1"], "newest first");
  });

  it("creates an entry for a delta that arrives without start, and ignores unknown kinds and junk", () => {
    const store = new StreamStore();
    assert.equal(store.apply({ requestId: "x", kind: "content", text: "hi" })!.content, "hi");
    assert.equal(store.apply({ requestId: "x", kind: "future-kind", text: "?" })!.content, "hi");
    assert.equal(store.apply(null as unknown as StreamEvent), undefined);
    assert.equal(store.apply({ kind: "content" } as StreamEvent), undefined);
  });

  it("records errors and cancellation from done", () => {
    const store = new StreamStore();
    store.apply({ requestId: "o", kind: "done", error: { code: "unauthorized", message: "Kimi rejected the API key" } });
    assert.equal(store.get("o")!.error, "Kimi rejected the API key");
    store.apply({ requestId: "a", kind: "done", error: "401 Unauthorized", cancelled: false });
    store.apply({ requestId: "b", kind: "done", cancelled: true });
    assert.equal(store.get("a")!.error, "401 Unauthorized");
    assert.equal(store.get("b")!.cancelled, true);
  });

  it("applyResult fills in an answer no stream delivered", () => {
    const store = new StreamStore();
    const e = store.applyResult({ requestId: "r", text: "final", reasoning: "why", model: "m" }, { action: "explain", title: "" });
    assert.equal(e.content, "final");
    assert.equal(e.reasoning, "why");
    assert.equal(e.action, "explain");
    assert.equal(e.model, "m");
    assert.equal(e.done, true);
  });

  it("applyResult does not duplicate a streamed answer", () => {
    const store = new StreamStore();
    feed(store, [
      { requestId: "r", kind: "start", action: "ask", model: "kimi-k2.5" },
      { requestId: "r", kind: "content", text: "streamed answer" },
      { requestId: "r", kind: "done", usage: null },
    ]);
    const e = store.applyResult({ requestId: "r", text: "streamed answer", model: "other" }, { action: "explain", title: "t" });
    assert.equal(e.content, "streamed answer");
    assert.equal(e.action, "ask");
    assert.equal(e.model, "kimi-k2.5");
  });

  it("applyResult carries a failed result's error and cancellation", () => {
    const store = new StreamStore();
    const failed = store.applyResult({ requestId: "f", error: { code: "network", message: "no route" } } as never, { action: "explain", title: "" });
    assert.equal(failed.error, "no route");
    assert.equal(store.applyResult({ requestId: "c", cancelled: true }, { action: "ask", title: "" }).cancelled, true);
  });

  it("applyResult without a request id still shows the text", () => {
    const store = new StreamStore();
    assert.equal(store.applyResult({ text: "t" }, { action: "ask", title: "" }).content, "t");
  });

  it("keeps at most `limit` entries, dropping the oldest", () => {
    const store = new StreamStore(3);
    for (let i = 0; i < 5; i++) {
      store.apply({ requestId: i, kind: "start" });
    }
    assert.deepEqual(store.list().map((e) => e.requestId), ["4", "3", "2"]);
    assert.equal(store.get(0), undefined);
  });

  it("snapshot shows an attached explanation again: one entry per id, text replaced, made the newest", () => {
    const store = new StreamStore();
    store.apply({ requestId: "older", kind: "start", action: "explain" });
    const shot = store.snapshot("explanation-7", { text: "partial", model: "kimi-k2.5", title: "Kimi: Explain", done: false }, { action: "explain", uri: "file:///p/a.py" });
    assert.equal(shot.content, "partial");
    assert.equal(shot.title, "Kimi: Explain (so far)");
    assert.equal(shot.done, true, "a snapshot never shows as running");
    assert.equal(shot.uri, "file:///p/a.py");
    assert.equal(isShownInPanel(shot), true);
    store.apply({ requestId: "newer", kind: "start", action: "ask" });
    const again = store.snapshot("explanation-7", { text: "the whole answer", model: "kimi-k2.5", title: "Kimi: Explain", done: true }, { action: "explain" });
    assert.equal(again, shot);
    assert.equal(again.content, "the whole answer");
    assert.equal(again.title, "Kimi: Explain");
    assert.deepEqual(store.list().map((e) => e.requestId), ["explanation-7", "newer", "older"]);
    assert.deepEqual(store.running.map((e) => e.requestId), ["newer", "older"]);
  });

  it("snapshot without a title keeps the earlier one", () => {
    const store = new StreamStore();
    store.snapshot("e", { text: "a", title: "Kimi: Ask", done: false }, { action: "explain" });
    assert.equal(store.snapshot("e", { text: "ab" }, { action: "explain" }).title, "Kimi: Ask");
  });

  it("start records the output", () => {
    const store = new StreamStore();
    assert.equal(store.apply({ requestId: "c", kind: "start", action: "explain", output: "comment" })!.output, "comment");
  });

  it("fail marks an entry done with an error, keeping an earlier error", () => {
    const store = new StreamStore();
    store.apply({ requestId: "r", kind: "start" });
    assert.equal(store.fail("r", "server restarted").error, "server restarted");
    store.apply({ requestId: "s", kind: "done", error: "first" });
    assert.equal(store.fail("s", "second").error, "first");
  });
});

describe("isShownInPanel", () => {
  const withOutput = (action: string, output?: string) =>
    new StreamStore().apply({ requestId: "r", kind: "start", action, output })!;
  it("output show → shown, whatever the action", () => {
    for (const action of ["explain", "ask", "describe-image", "myReview"]) {
      assert.equal(isShownInPanel(withOutput(action, "show")), true, action);
    }
  });
  for (const output of ["replace", "insertBefore", "insertAfter", "altText", "comment"]) {
    it(`output ${output} → not shown`, () => assert.equal(isShownInPanel(withOutput("explain", output)), false));
  }
  it("no output known yet → not shown", () => assert.equal(isShownInPanel(withOutput("explain")), false));
  it("the result's output counts when no stream came", () => {
    const store = new StreamStore();
    assert.equal(isShownInPanel(store.applyResult({ requestId: "q", output: "show", text: "hi" }, { action: "x", title: "" })), true);
    assert.equal(isShownInPanel(store.applyResult({ requestId: "p", output: "replace" }, { action: "x", title: "" })), false);
  });
});

describe("formatting", () => {
  it("formatUsage", () => {
    assert.equal(formatUsage({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 }), "12 in · 3 out tokens");
    assert.equal(formatUsage({ promptTokens: 1, completionTokens: 2 }), "1 in · 2 out tokens");
    assert.equal(formatUsage({ total_tokens: 7 }), "7 tokens");
    assert.equal(formatUsage(null), undefined);
    assert.equal(formatUsage({}), undefined);
  });
  it("formatElapsed", () => {
    assert.equal(formatElapsed(250), "250 ms");
    assert.equal(formatElapsed(1500), "1.5 s");
    assert.equal(formatElapsed(undefined), undefined);
  });
});

// The end of every answer (issue 14): `done` carries usage, cost (or null) and `spent`, the server's ready line.
describe("the done line", () => {
  const usage = { prompt_tokens: 1000, completion_tokens: 234, total_tokens: 1234, cached_tokens: 800 };
  const cases: Array<[string, Partial<StreamEvent>, string | undefined]> = [
    ["USD", { usage, cost: { amount: 0.0012, currency: "USD" }, spent: "1,234 tokens (800 cached) · $0.0012" }, "1,234 tokens (800 cached) · $0.0012"],
    ["CNY", { usage, cost: { amount: 0.0081, currency: "CNY" }, spent: "1,234 tokens (800 cached) · ¥0.0081" }, "1,234 tokens (800 cached) · ¥0.0081"],
    ["no known price", { usage, cost: null, spent: "1,234 tokens (800 cached)" }, "1,234 tokens (800 cached)"],
    [
      "a cost with a note",
      { usage, cost: { amount: 0.004, currency: "USD", note: "kimi-k3 also bills cache writes, not included" }, spent: "1,234 tokens · $0.0040" },
      "1,234 tokens · $0.0040 (kimi-k3 also bills cache writes, not included)",
    ],
    ["an older server without spent", { usage }, "1000 in · 234 out tokens"],
    ["no usage at all", {}, undefined],
  ];
  for (const [name, done, text] of cases) {
    it(`${name}: stored from done, shown as the server wrote it`, () => {
      const store = new StreamStore();
      store.apply({ requestId: "r", kind: "start", action: "refactor", output: "replace", title: "Kimi: Refactor" });
      const entry = store.apply({ requestId: "r", kind: "done", ...done })!;
      assert.equal(entry.spent, done.spent);
      assert.deepEqual(entry.cost, done.cost);
      assert.equal(spentText(entry), text);
      assert.equal(endMessage(entry), text ? `Kimi: Refactor · ${text}` : undefined);
    });
  }

  it("endMessage: a title without Kimi gets it; cancelled says so; failures and running entries say nothing", () => {
    const store = new StreamStore();
    store.apply({ requestId: "a", kind: "start", action: "fix", output: "replace", title: "Fix a.py" });
    assert.equal(endMessage(store.get("a")!), undefined, "still running");
    assert.equal(endMessage(store.apply({ requestId: "a", kind: "done", spent: "12 tokens · $0.0001" })!), "Kimi: Fix a.py · 12 tokens · $0.0001");
    assert.equal(endMessage(store.apply({ requestId: "b", kind: "done", cancelled: true })!), "Kimi: answer: cancelled");
    assert.equal(endMessage(store.apply({ requestId: "c", kind: "done", error: { code: "network", message: "x" } })!), undefined);
  });

  it("the result's cost is kept when no done arrived", () => {
    const store = new StreamStore();
    const e = store.applyResult({ requestId: "q", output: "show", text: "t", usage: { total_tokens: 5 }, cost: { amount: 0.1, currency: "USD" } }, { action: "ask", title: "" });
    assert.deepEqual(e.cost, { amount: 0.1, currency: "USD" });
    assert.equal(spentText(e), "5 tokens");
  });

  it("a queued status (rate limit) is the entry's status until the answer goes on", () => {
    const store = new StreamStore();
    store.apply({ requestId: "r", kind: "start", output: "show" });
    assert.equal(store.apply({ requestId: "r", kind: "status", text: "queued: rate limit, retrying in 3 s" })!.status, "queued: rate limit, retrying in 3 s");
    assert.equal(store.apply({ requestId: "r", kind: "done", spent: "1 tokens" })!.status, undefined);
  });
});
