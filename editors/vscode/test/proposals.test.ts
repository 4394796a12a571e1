// The pure part of proposals (src/proposals.ts): what is drawn for a hunk, the code lenses, hunk navigation,
// following the user's typing, and the store's answer to each state the server sends.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  applyHunks,
  documentHunks,
  Hunk,
  hunkAt,
  hunkHoverMarkdown,
  lineDiff,
  offsetAt,
  paintHunk,
  Proposal,
  proposalAt,
  proposalLenses,
  ProposalNotification,
  proposalPickItems,
  proposalStatusText,
  ProposalStore,
  rebaseRange,
  splitLines,
  stepHunk,
} from "../src/proposals";
import type { Range } from "../src/stream";

const r = (sl: number, sc: number, el: number, ec: number): Range => ({
  start: { line: sl, character: sc },
  end: { line: el, character: ec },
});

// The example of tests/e2e/test_proposals.py: "rename total to acc" on the first five lines.
const CODE = "def total(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n\n\nprint(total([1, 2]))\n";
const H1: Hunk = { id: "h1", range: r(0, 0, 2, 0), oldText: "def total(xs):\n    total = 0\n", newText: "def acc(xs):\n    acc = 0\n" };
const H2: Hunk = { id: "h2", range: r(3, 0, 5, 0), oldText: "        total += x\n    return total\n", newText: "        acc += x\n    return acc\n" };

function proposal(over: Partial<Proposal> = {}): Proposal {
  return {
    id: "p1",
    uri: "file:///a.py",
    version: 1,
    action: "refactor",
    title: "Kimi: Refactor",
    output: "replace",
    model: "kimi-k2.5",
    state: "ready",
    range: r(0, 0, 5, 0),
    hunks: [H1, H2],
    ...over,
  };
}

function note(over: Partial<ProposalNotification> = {}): ProposalNotification {
  return {
    proposalId: "p1",
    requestId: "r1",
    uri: "file:///a.py",
    version: 1,
    action: "refactor",
    title: "Kimi: Refactor",
    output: "replace",
    model: "kimi-k2.5",
    state: "ready",
    range: r(0, 0, 5, 0),
    hunks: [H1, H2],
    ...over,
  };
}

describe("text helpers", () => {
  const lines: Array<[string, string[]]> = [
    ["", []],
    ["a", ["a"]],
    ["a\n", ["a"]],
    ["a\r\nb\rc\n", ["a", "b", "c"]],
    ["a\n\n", ["a", ""]],
  ];
  for (const [text, expected] of lines) {
    it(`splitLines(${JSON.stringify(text)})`, () => assert.deepEqual(splitLines(text), expected));
  }

  const offsets: Array<[string, number, number, number]> = [
    ["ab\ncd", 0, 0, 0],
    ["ab\ncd", 1, 1, 4],
    ["ab\r\ncd", 1, 0, 4],
    ["ab\ncd", 0, 99, 2], // past the line's end: its end
    ["ab\ncd", 9, 0, 5], // past the last line: the text's end
  ];
  for (const [text, line, character, expected] of offsets) {
    it(`offsetAt(${JSON.stringify(text)}, ${line}:${character}) = ${expected}`, () =>
      assert.equal(offsetAt(text, { line, character }), expected));
  }

  it("applyHunks gives the text accepting every hunk would", () => {
    assert.equal(applyHunks(CODE, [H2, H1]), CODE.replace(/total/g, "acc").replace("print(acc", "print(total"));
  });
  it("applyHunks keeps CRLF text and handles an insertion", () => {
    const text = "a\r\nb\r\n";
    assert.equal(applyHunks(text, [{ id: "h1", range: r(1, 0, 1, 0), oldText: "", newText: "x\r\n" }]), "a\r\nx\r\nb\r\n");
  });
});

describe("rebaseRange follows typing as the server does", () => {
  const hunk = r(3, 0, 5, 0);
  const cases: Array<[string, Range, string, Range | null]> = [
    ["a line added above moves it down", r(0, 0, 0, 0), "import os\n", r(4, 0, 6, 0)],
    ["a line removed above moves it up", r(0, 0, 1, 0), "", r(2, 0, 4, 0)],
    ["typing on a line above keeps its lines", r(1, 2, 1, 2), "xyz", hunk],
    ["an insertion right at its start moves it", r(3, 0, 3, 0), "# hi\n", r(4, 0, 6, 0)],
    ["typing at its end (the next line) leaves it", r(5, 0, 5, 0), "x", hunk],
    ["typing below leaves it", r(7, 0, 7, 3), "", hunk],
    ["typing inside makes it stale", r(4, 2, 4, 3), "q", null],
    ["a change across its start makes it stale", r(2, 0, 3, 4), "", null],
    ["an empty change is nothing", r(4, 1, 4, 1), "", hunk],
  ];
  for (const [name, range, text, expected] of cases) {
    it(name, () => assert.deepEqual(rebaseRange(hunk, { range, text }), expected));
  }
  it("a change ending on the hunk's first line before it shifts the columns", () => {
    const h = r(2, 4, 2, 8);
    assert.deepEqual(rebaseRange(h, { range: r(1, 3, 2, 1), text: "ab" }), r(1, 8, 1, 12));
  });
});

describe("paintHunk: removed lines marked, the new code beside them", () => {
  const cases: Array<{ name: string; hunk: Hunk; removed: number[]; ghosts: Array<[number, string, string]> }> = [
    { name: "a rename, line for line", hunk: H1, removed: [0, 1], ghosts: [[0, "after", "→ def acc(xs):"], [1, "after", "→ acc = 0"]] },
    {
      name: "an unchanged line inside the hunk is left alone",
      hunk: { id: "h1", range: r(3, 0, 6, 0), oldText: "a = 1\nsame\nb = 2\n", newText: "a = 10\nsame\nb = 20\n" },
      removed: [3, 5],
      ghosts: [[3, "after", "→ a = 10"], [5, "after", "→ b = 20"]],
    },
    {
      name: "more new lines than old: the rest is counted on the last removed line",
      hunk: { id: "h1", range: r(2, 0, 3, 0), oldText: "x = f()\n", newText: "y = g()\nx = h(y)\nz = 1\n" },
      removed: [2],
      ghosts: [[2, "after", "→ y = g()  (+2 more lines)"]],
    },
    {
      name: "fewer new lines than old: the extra removed lines are only marked",
      hunk: { id: "h1", range: r(0, 0, 3, 0), oldText: "a\nb\nc\n", newText: "abc\n" },
      removed: [0, 1, 2],
      ghosts: [[0, "after", "→ abc"]],
    },
    {
      name: "a pure insertion shows after the line above it",
      hunk: { id: "h1", range: r(5, 0, 5, 0), oldText: "", newText: "# refactored by fake-kimi\n" },
      removed: [],
      ghosts: [[4, "after", "+ # refactored by fake-kimi"]],
    },
    {
      name: "an insertion at the top of the file shows before the first line",
      hunk: { id: "h1", range: r(0, 0, 0, 0), oldText: "", newText: "# one\n# two\n" },
      removed: [],
      ghosts: [[0, "before", "+ # one  (+1 more line)"]],
    },
    {
      name: "lines removed without replacement",
      hunk: { id: "h1", range: r(1, 0, 3, 0), oldText: "dead()\ncode()\n", newText: "" },
      removed: [1, 2],
      ghosts: [],
    },
    {
      name: "lines added after an unchanged one inside the hunk",
      hunk: { id: "h1", range: r(2, 0, 3, 0), oldText: "keep\n", newText: "keep\nnew\n" },
      removed: [],
      ghosts: [[2, "after", "+ new"]],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const paint = paintHunk("p1", c.hunk, 100);
      assert.deepEqual(paint.removed, c.removed);
      assert.deepEqual(
        paint.ghosts.map((g) => [g.line, g.placement, g.text]),
        c.ghosts,
      );
    });
  }
  it("a long line is cut", () => {
    const paint = paintHunk("p1", { id: "h", range: r(0, 0, 1, 0), oldText: "a\n", newText: `${"x".repeat(300)}\n` }, 10);
    assert.ok(paint.ghosts[0].text.length <= 100 && paint.ghosts[0].text.endsWith("…"), paint.ghosts[0].text);
  });
  it("lineDiff keeps the longest common lines", () => {
    assert.deepEqual(
      lineDiff(["a", "b", "c"], ["a", "x", "c"]).map((o) => o.op),
      ["eq", "del", "ins", "eq"],
    );
  });
  it("the hover shows the hunk as a diff", () => {
    const md = hunkHoverMarkdown(proposal(), H1);
    assert.match(md, /```diff\n- def total\(xs\):\n-     total = 0\n\+ def acc\(xs\):\n\+     acc = 0\n```/);
    assert.match(md, /\*\*Kimi: Refactor\*\* proposes \(kimi-k2\.5\)/);
  });
});

describe("proposalLenses", () => {
  const titles = (p: Proposal, diffOpen = true) => proposalLenses(p, { diffOpen }).map((l) => [l.line, l.title, l.command, l.args?.hunkId ?? ""]);
  const cases: Array<[string, Proposal, boolean, Array<[number, string, string, string]>]> = [
    [
      "one change: one row",
      proposal({ hunks: [H2], range: r(3, 0, 5, 0) }),
      true,
      [
        [3, "Kimi: Refactor", "", ""],
        [3, "Accept", "kimi-vscode.acceptProposalChange", "h2"],
        [3, "Reject", "kimi-vscode.rejectProposalChange", "h2"],
        [3, "Refine…", "kimi-vscode.refineProposal", ""],
      ],
    ],
    [
      "several changes: the whole proposal on its first line, a row per change",
      proposal(),
      true,
      [
        [0, "Kimi: Refactor", "", ""],
        [0, "Accept All", "kimi-vscode.acceptProposal", ""],
        [0, "Reject All", "kimi-vscode.rejectProposal", ""],
        [0, "Refine…", "kimi-vscode.refineProposal", ""],
        [0, "Change 1/2:", "", ""],
        [0, "Accept", "kimi-vscode.acceptProposalChange", "h1"],
        [0, "Reject", "kimi-vscode.rejectProposalChange", "h1"],
        [3, "Change 2/2:", "", ""],
        [3, "Accept", "kimi-vscode.acceptProposalChange", "h2"],
        [3, "Reject", "kimi-vscode.rejectProposalChange", "h2"],
      ],
    ],
    [
      "the diff closed: a lens to reopen it",
      proposal({ hunks: [H1] }),
      false,
      [
        [0, "Kimi: Refactor", "", ""],
        [0, "Accept", "kimi-vscode.acceptProposalChange", "h1"],
        [0, "Reject", "kimi-vscode.rejectProposalChange", "h1"],
        [0, "Refine…", "kimi-vscode.refineProposal", ""],
        [0, "Diff", "kimi-vscode.showProposalDiff", ""],
      ],
    ],
    [
      "refining: progress and Cancel, nothing to accept",
      proposal({ state: "refining", refining: "uppercase it" }),
      true,
      [
        [0, "$(sync~spin) Kimi: Refactor: refining “uppercase it”…", "", ""],
        [0, "Cancel", "kimi-vscode.cancelRefine", ""],
      ],
    ],
    ["no hunks left: no lenses", proposal({ hunks: [] }), true, []],
  ];
  for (const [name, p, diffOpen, expected] of cases) {
    it(name, () => assert.deepEqual(titles(p, diffOpen), expected));
  }
  it("every command lens names the proposal", () => {
    for (const l of proposalLenses(proposal(), { diffOpen: false })) {
      if (l.command) {
        assert.equal(l.args?.proposalId, "p1", l.title);
      }
    }
  });
});

describe("navigation", () => {
  const other = proposal({ id: "p2", range: r(10, 0, 12, 0), hunks: [{ id: "h1", range: r(10, 0, 12, 0), oldText: "a\nb\n", newText: "c\n" }] });
  const hunks = documentHunks([other, proposal()]);
  it("lists the hunks of every ready proposal, top first", () =>
    assert.deepEqual(
      hunks.map((h) => [h.proposalId, h.hunkId, h.line, h.lastLine]),
      [
        ["p1", "h1", 0, 1],
        ["p1", "h2", 3, 4],
        ["p2", "h1", 10, 11],
      ],
    ));
  it("leaves out a proposal being refined", () => assert.equal(documentHunks([proposal({ state: "refining" })]).length, 0));
  const at: Array<[number, string | undefined]> = [
    [0, "p1/h1"],
    [1, "p1/h1"],
    [2, undefined],
    [4, "p1/h2"],
    [11, "p2/h1"],
    [12, undefined],
  ];
  for (const [line, expected] of at) {
    it(`the hunk at line ${line}: ${expected ?? "none"}`, () => {
      const h = hunkAt(hunks, line);
      assert.equal(h ? `${h.proposalId}/${h.hunkId}` : undefined, expected);
    });
  }
  const steps: Array<[number, 1 | -1, string]> = [
    [0, 1, "p1/h2"],
    [2, 1, "p1/h2"],
    [3, 1, "p2/h1"],
    [11, 1, "p1/h1"], // wraps to the top
    [20, -1, "p2/h1"],
    [4, -1, "p1/h1"], // from inside h2: the one before it
    [0, -1, "p2/h1"], // wraps to the bottom
  ];
  for (const [line, dir, expected] of steps) {
    it(`${dir === 1 ? "next" : "previous"} from line ${line}: ${expected}`, () => {
      const h = stepHunk(hunks, line, dir);
      assert.equal(h && `${h.proposalId}/${h.hunkId}`, expected);
    });
  }
  it("no hunks: nowhere to go", () => assert.equal(stepHunk([], 3, 1), undefined));
  it("proposalAt: the one the cursor is in, else the only one", () => {
    assert.equal(proposalAt([proposal(), other], 4)?.id, "p1");
    assert.equal(proposalAt([proposal(), other], 11)?.id, "p2");
    assert.equal(proposalAt([proposal(), other], 8), undefined);
    assert.equal(proposalAt([other], 3)?.id, "p2");
  });
});

describe("ProposalStore: what each state does", () => {
  it("ready, new: shown, and new", () => {
    const store = new ProposalStore();
    const c = store.apply(note());
    assert.equal(c.kind, "shown");
    assert.ok(c.kind === "shown" && c.isNew && c.proposal.hunks.length === 2);
    assert.equal(store.count, 1);
  });
  it("refining keeps the hunks and the instruction; ready again replaces the hunks", () => {
    const store = new ProposalStore();
    store.apply(note());
    store.markRefining("p1", "uppercase");
    const refining = store.apply(note({ state: "refining" }));
    assert.ok(refining.kind === "shown" && !refining.isNew && refining.proposal.refining === "uppercase");
    const upper: Hunk = { ...H1, id: "h101", newText: "DEF ACC(XS):\n" };
    const ready = store.apply(note({ hunks: [upper] }));
    assert.ok(ready.kind === "shown" && ready.proposal.refining === undefined);
    assert.deepEqual(store.get("p1")?.hunks.map((h) => h.id), ["h101"]);
  });
  it("a notification without positions (the server had not seen the latest text) keeps ours", () => {
    const store = new ProposalStore();
    store.apply(note());
    store.apply(note({ hunks: [], range: null }));
    assert.equal(store.get("p1")?.hunks.length, 2);
  });
  const endings: Array<[string, string]> = [
    ["accepted", "ended"],
    ["rejected", "ended"],
    ["replaced", "ended"],
    ["stale", "stale"],
  ];
  for (const [state, kind] of endings) {
    it(`${state}: ${kind}, and gone from the store`, () => {
      const store = new ProposalStore();
      store.apply(note());
      const c = store.apply(note({ state, message: "why" }));
      assert.equal(c.kind, kind);
      assert.equal(store.count, 0);
    });
  }
  it("stale is reported once", () => {
    const store = new ProposalStore();
    store.apply(note());
    const first = store.apply(note({ state: "stale", message: "the code it would change was edited" }));
    assert.ok(first.kind === "stale" && first.message === "the code it would change was edited" && first.wasLive);
    assert.equal(store.apply(note({ state: "stale" })).kind, "ended");
  });
  it("ignores what is not a proposal", () => {
    assert.equal(new ProposalStore().apply({} as ProposalNotification).kind, "ignored");
  });
  it("follows typing: above moves the hunks, inside hides the hunk until the server speaks", () => {
    const store = new ProposalStore();
    store.apply(note());
    assert.equal(store.documentChanged("file:///a.py", [{ range: r(0, 0, 0, 0), text: "import os\n" }]), false);
    assert.deepEqual(store.get("p1")?.hunks.map((h) => h.range.start.line), [1, 4]);
    assert.equal(store.documentChanged("file:///a.py", [{ range: r(4, 8, 4, 13), text: "count" }]), true);
    assert.deepEqual(store.get("p1")?.hunks.map((h) => h.id), ["h1"]);
  });
  it("sync: the server's list replaces ours; a proposal it no longer lists ends", () => {
    const store = new ProposalStore();
    store.apply(note());
    store.apply(note({ proposalId: "p2", range: r(10, 0, 11, 0), hunks: [] }));
    const changes = store.sync("file:///a.py", [note({ hunks: [H2] })]);
    assert.deepEqual(changes.map((c) => c.kind), ["shown", "ended"]);
    assert.deepEqual(store.all.map((p) => [p.id, p.hunks.map((h) => h.id)]), [["p1", ["h2"]]]);
  });
});

describe("status bar and the list", () => {
  it("the count, spinning while one is refined", () => {
    assert.equal(proposalStatusText([]), undefined);
    assert.equal(proposalStatusText([proposal()]), "$(diff) 1 Kimi proposal");
    assert.equal(proposalStatusText([proposal(), proposal({ id: "p2", state: "refining" })]), "$(sync~spin) 2 Kimi proposals");
  });
  it("the quick pick rows: where, how much, by whom", () => {
    const items = proposalPickItems([proposal(), proposal({ id: "p2", uri: "file:///b.py", hunks: [H2], state: "refining" })], (u) => u.replace("file:///", ""));
    assert.deepEqual(
      items.map((i) => [i.proposalId, i.label, i.description, i.detail]),
      [
        ["p1", "$(diff) Kimi: Refactor", "a.py:1-5", "2 changes, +4 −4 lines · kimi-k2.5"],
        ["p2", "$(diff) Kimi: Refactor", "b.py:4-5", "refining… · 1 change, +2 −2 lines · kimi-k2.5"],
      ],
    );
  });
});
