import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { completionChoices, CompletionInputs, completionView, minutesLeft } from "../src/completionStatus";

const NOW = 1_000_000_000_000;

describe("completionView", () => {
  const cases: [string, Partial<CompletionInputs>, string, RegExp, boolean][] = [
    ["on", {}, "on", /^\$\(check\) Kimi ghost text$/, false],
    ["off", { enabled: false }, "off", /circle-slash/, false],
    ["off wins over a snooze", { enabled: false, snoozedUntil: NOW + 60_000 }, "off", /circle-slash/, false],
    ["snoozed, minutes left rounded up", { snoozedUntil: NOW + 29 * 60_000 + 1 }, "snoozed", /\$\(clock\) Kimi ghost text 30 min/, false],
    ["a snooze that ended", { snoozedUntil: NOW - 1 }, "on", /check/, false],
    ["paused by the server", { paused: "completions paused: rate limit, 12 s" }, "paused", /warning.*paused/, true],
    ["a snooze hides a pause", { snoozedUntil: NOW + 60_000, paused: "x" }, "snoozed", /clock/, false],
  ];
  for (const [name, inputs, state, text, warn] of cases) {
    it(name, () => {
      const view = completionView({ enabled: true, now: NOW, ...inputs });
      assert.equal(view.state, state);
      assert.match(view.text, text);
      assert.equal(view.warn, warn);
      assert.ok(!/·/.test(view.text) && !/international|china/.test(view.text), "not the model item's look");
    });
  }

  it("the tooltip says why it is paused, the model and the counts", () => {
    const v = completionView({ enabled: true, now: NOW, paused: "completions paused: rate limit, 12 s", model: "kimi-k2.6", shown: 4, accepted: 1 });
    assert.match(v.tooltip, /\(kimi-k2\.6\) but the server paused it: completions paused: rate limit, 12 s\. 4 shown, 1 accepted/);
  });

  it("the tooltip names a workspace value that overrides the user setting", () => {
    assert.match(completionView({ enabled: false, now: NOW, workspaceValue: false }).tooltip, /This workspace sets kimi\.completion\.enabled to false/);
  });

  it("minutesLeft", () => {
    assert.equal(minutesLeft(undefined, NOW), 0);
    assert.equal(minutesLeft(NOW + 1, NOW), 1);
    assert.equal(minutesLeft(NOW + 90_000, NOW), 2);
  });
});

describe("completionChoices", () => {
  const cases: [Parameters<typeof completionChoices>[0], string[]][] = [
    ["on", ["snooze", "off", "nextEdit", "settings"]],
    ["paused", ["snooze", "off", "nextEdit", "settings"]],
    ["snoozed", ["on", "off", "nextEdit", "settings"]],
    ["off", ["on", "nextEdit", "settings"]],
  ];
  for (const [state, choices] of cases) {
    it(state, () => assert.deepEqual(completionChoices(state).map((c) => c.choice), choices));
  }
});
