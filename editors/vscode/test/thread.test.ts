import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderAnswer, renderConversation, renderTurn } from "../src/panelHtml";
import { Entry, StreamStore } from "../src/stream";
import { ago, blockIndexes, codeBlocks, ConversationIndex, threadEntries, threadPickItems } from "../src/thread";

function entry(fields: Partial<Entry>): Entry {
  return { requestId: "r", action: "ask", output: "show", title: "", model: "m", reasoning: "", content: "", done: true, cancelled: false, ...fields };
}

/** The (turn, block) of every Apply button in some HTML, in order. */
function applyButtons(html: string): string[] {
  return [...html.matchAll(/data-apply-turn="(\d+)" data-apply-block="(\d+)"/g)].map((m) => `${m[1]}:${m[2]}`);
}

describe("codeBlocks (the server's numbering for kimi.applyFromThread)", () => {
  const cases: [string, string, string[]][] = [
    ["none", "just prose", []],
    ["one", "Like this:\n```python\ndef f(y):\n    return y * 2\n```\n", ["def f(y):\n    return y * 2\n"]],
    ["two, tildes too", "```\na\n```\ntext\n~~~js\nb\n~~~", ["a\n", "b\n"]],
    ["a longer fence holds a shorter one", "````md\n```\nx\n```\n````", ["```\nx\n```\n"]],
    ["an open fence is no block", "```python\ndef f():", []],
    ["an indented fence is not the server's", "- item\n  ```\n  x\n  ```\n", []],
  ];
  for (const [name, answer, blocks] of cases) {
    it(name, () => assert.deepEqual(codeBlocks(answer), blocks));
  }
});

describe("blockIndexes and the Apply buttons", () => {
  const cases: [string, string, string[]][] = [
    ["each block gets the server's index", "```\na\n```\n\n```py\nb\n```\n", ["2:0", "2:1"]],
    ["an indented block (not the server's) gets no button, the next keeps its index", "- x\n  ```\n  no\n  ```\n\n```\nyes\n```\n", ["2:0"]],
    ["a block still streaming gets none", "```\nyes\n```\n```\nstill", ["2:0"]],
    ["CRLF answers", "```\r\na\r\n```\r\n", ["2:0"]],
  ];
  for (const [name, answer, buttons] of cases) {
    it(name, () => assert.deepEqual(applyButtons(renderAnswer(answer, { threadId: "t", turn: 2 })), buttons));
  }
  it("matches rendered bodies in order, skipping server blocks the renderer did not see", () => {
    assert.deepEqual(blockIndexes("```\na\n```\n```\nb\n```\n", ["b"]), [1]);
    assert.deepEqual(blockIndexes("```\na\n```\n", ["zzz", "a"]), [undefined, 0]);
  });
  it("no target, no buttons", () => assert.deepEqual(applyButtons(renderAnswer("```\na\n```\n")), []));
  it("buttons only on a finished turn of a thread that started from a file", () => {
    const done = entry({ content: "```\na\n```\n", threadId: "t", turn: 0 });
    assert.deepEqual(applyButtons(renderTurn(done, { canApply: true })), ["0:0"]);
    assert.deepEqual(applyButtons(renderTurn(done, { canApply: false })), []);
    assert.deepEqual(applyButtons(renderTurn({ ...done, done: false }, { canApply: true })), []);
    assert.deepEqual(applyButtons(renderTurn({ ...done, turn: undefined }, { canApply: true })), []);
  });
});

describe("renderConversation", () => {
  const first = entry({ requestId: "r1", action: "explain", uri: "file:///p/a.py", content: "It doubles.", threadId: "t1", turn: 0, reasoning: "think" });
  const second = entry({
    requestId: "r2",
    content: "Because:\n```python\nx = 1\n```\n",
    threadId: "t1",
    turn: 1,
    question: "and why?",
    references: ["lib.py:1-2", ".env (refused)"],
    note: "1 earlier follow-up was left out to fit kimi-k2.5's window.",
  });

  it("shows the turns in order: question, references, note, folded reasoning, answer; a follow-up box", () => {
    const html = renderConversation("r1", [first, second]);
    const order = ["It doubles.", "and why?", "References: lib.py:1-2, .env (refused)", "left out to fit", "x = 1"].map((s) => html.indexOf(s));
    assert.ok(order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1])), String(order));
    assert.match(html, /<details class="reasoning"><summary>Reasoning<\/summary>/);
    assert.ok(!/<details[^>]*open/.test(html));
    assert.match(html, /<div class="follow-up" data-thread="t1"><textarea/);
    assert.deepEqual(applyButtons(html), ["1:0"]);
    assert.match(html, /<section class="entry" data-id="r1" data-thread="t1">/);
  });

  it("no follow-up box while a turn runs, nor without a thread", () => {
    assert.ok(!renderConversation("r1", [first, { ...second, done: false }]).includes(`class="follow-up"`));
    assert.ok(!renderConversation("x", [entry({ content: "hi" })]).includes(`class="follow-up"`));
  });

  it("a thread that did not start from a file has no Apply buttons", () => {
    assert.deepEqual(applyButtons(renderConversation("r1", [{ ...first, uri: undefined }, second])), []);
  });

  it("escapes questions, references, notes, thread and request ids", () => {
    const evil = entry({
      requestId: '"><img src=x>',
      threadId: '"><script>',
      turn: 0,
      uri: "file:///a.py",
      question: "<script>alert(1)</script>",
      references: ["<b>x</b>"],
      note: "<i>n</i>",
      content: "```\n<img onerror=1>\n```\n",
    });
    const html = renderConversation(evil.requestId, [evil]);
    assert.ok(!/<img|<script|<b>|<i>/.test(html), html);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });
});

describe("ConversationIndex", () => {
  it("a first answer keys its thread; follow-ups join it, in turn order; strays stand alone", () => {
    const index = new ConversationIndex();
    const store = new StreamStore();
    store.apply({ requestId: "a", kind: "start", output: "show" });
    assert.equal(index.keyOf(store.get("a")!), "a");
    store.apply({ requestId: "a", kind: "done", threadId: "t" });
    store.placeholder("pending-1", { output: "show", threadId: "t", question: "more?" });
    store.apply({ requestId: "b", kind: "start", output: "show" });
    const all = store.list().reverse();
    assert.equal(index.keyOf(store.get("a")!), "a");
    assert.equal(index.keyOf(store.get("pending-1")!), "a");
    assert.equal(index.keyOf(store.get("b")!), "b");
    store.get("a")!.turn = 0;
    assert.deepEqual(index.members("a", all).map((e) => e.requestId), ["a", "pending-1"]);
    assert.equal(index.shown("t"), "a");
    assert.ok(store.rename("pending-1", "c"));
    assert.deepEqual(index.members("a", store.list().reverse()).map((e) => e.requestId), ["a", "c"]);
    assert.equal(store.rename("c", "b"), false, "an id in use");
  });
});

describe("stored threads", () => {
  it("threadEntries: one finished entry per turn", () => {
    const entries = threadEntries({
      threadId: "t9",
      title: "Explain: a.py",
      model: "kimi-k2.5",
      uri: "file:///a.py",
      action: "explain",
      turns: [
        { question: "", answer: "A", reasoning: "R", model: "kimi-k2.5" },
        { question: "why?", answer: "B", references: ["lib.py"], note: "" },
      ],
    });
    assert.deepEqual(
      entries.map((e) => [e.requestId, e.turn, e.question, e.content, e.reasoning, e.done, e.threadId]),
      [
        ["thread:t9:0", 0, "", "A", "R", true, "t9"],
        ["thread:t9:1", 1, "why?", "B", "", true, "t9"],
      ],
    );
    assert.equal(entries[0].title, "Explain: a.py");
    assert.equal(entries[1].model, "kimi-k2.5");
  });

  it("threadPickItems", () => {
    const now = Date.UTC(2025, 0, 1, 12);
    const items = threadPickItems(
      [
        { threadId: "a", title: "why not a dict?", model: "kimi-k2.5", uri: "file:///p/my%20a.py", turns: 2, updated: now / 1000 - 300 },
        { threadId: "b", title: "", turns: 1 },
      ],
      now,
    );
    assert.deepEqual(items, [
      { label: "why not a dict?", description: "2 turns · kimi-k2.5 · my a.py · 5 min ago", threadId: "a" },
      { label: "b", description: "1 turn", threadId: "b" },
    ]);
  });

  const agoCases: [number, string][] = [[5_000, "just now"], [90_000, "2 min ago"], [3 * 3600_000, "3 h ago"], [72 * 3600_000, "3 days ago"]];
  for (const [ms, text] of agoCases) {
    it(`ago(${ms}) = ${text}`, () => assert.equal(ago(ms), text));
  }
});
