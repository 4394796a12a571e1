import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  actionPickItems,
  commentWidth,
  customActions,
  IMAGE_GLOB,
  imageExcludeGlob,
  imagePickItems,
  needsInstruction,
} from "../src/palette";

describe("customActions", () => {
  it("keeps valid actions in order, defaulting output to show", () => {
    const actions = customActions([
      { id: "shout", title: "Shout", prompt: "Uppercase it", output: "replace" },
      { id: "review.v2", title: "Kimi: Review", prompt: "Review {selection}" },
    ]);
    assert.deepEqual(actions, [
      { id: "shout", title: "Shout", prompt: "Uppercase it", output: "replace" },
      { id: "review.v2", title: "Kimi: Review", prompt: "Review {selection}", output: "show" },
    ]);
  });

  it("drops what the server would reject, and later duplicates of an id (the server runs the first)", () => {
    const actions = customActions([
      null,
      "x",
      { title: "no id", prompt: "p" },
      { id: "bad id", title: "t", prompt: "p" },
      { id: "notitle", prompt: "p" },
      { id: "noprompt", title: "t", prompt: "" },
      { id: "badout", title: "t", prompt: "p", output: "sideways" },
      { id: "ok", title: "first", prompt: "p", output: "insertAfter" },
      { id: "ok", title: "second", prompt: "p" },
    ]);
    assert.deepEqual(actions.map((a) => [a.id, a.title, a.output]), [["ok", "first", "insertAfter"]]);
  });

  it("anything but an array is no actions", () => {
    assert.deepEqual(customActions(undefined), []);
    assert.deepEqual(customActions({ id: "a" }), []);
  });
});

describe("actionPickItems", () => {
  it("labels by title without the Kimi prefix, describes the output, details the id", () => {
    const items = actionPickItems(
      customActions([
        { id: "r", title: "Kimi: Review", prompt: "p" },
        { id: "s", title: "Shout", prompt: "p", output: "replace" },
        { id: "b", title: "Header", prompt: "p", output: "insertBefore" },
      ]),
    );
    assert.deepEqual(
      items.map((i) => [i.label, i.description, i.detail, i.action.id]),
      [
        ["Review", "answers in the Kimi panel", "r", "r"],
        ["Shout", "replaces the selection", "s", "s"],
        ["Header", "inserts above the selection", "b", "b"],
      ],
    );
  });

  it("needsInstruction", () => {
    const [a, b] = customActions([
      { id: "a", title: "A", prompt: "Do {instruction} to {selection}" },
      { id: "b", title: "B", prompt: "Review {selection}" },
    ]);
    assert.equal(needsInstruction(a), true);
    assert.equal(needsInstruction(b), false);
  });
});

describe("commentWidth", () => {
  const cases: Array<[string, unknown, unknown, number | undefined]> = [
    ["the first ruler", [80, 120], undefined, 80],
    ["a ruler object", [{ column: 72, color: "#f00" }], 100, 72],
    ["the ruler wins over the wrap column", [88], 100, 88],
    ["the wrap column without rulers", [], 100, 100],
    ["nothing: the server's default", [], undefined, undefined],
    ["rulers not an array", "80", undefined, undefined],
    ["a ruler the server would refuse falls through", [5], 90, 90],
    ["too wide", [2000], undefined, undefined],
    ["not an integer", [80.5], undefined, undefined],
  ];
  for (const [name, rulers, column, width] of cases) {
    it(name, () => assert.equal(commentWidth(rulers, column), width));
  }
});

describe("images", () => {
  it("the glob covers the server's image types", () => {
    for (const ext of ["png", "jpg", "jpeg", "webp", "gif", "PNG"]) {
      assert.ok(IMAGE_GLOB.includes(ext), ext);
    }
  });

  it("imageExcludeGlob: node_modules plus the files.exclude patterns that are on", () => {
    assert.equal(imageExcludeGlob(undefined), "**/node_modules/**");
    assert.equal(
      imageExcludeGlob({ "**/.git": true, "**/dist": false, "**/*.{a,b}": true, "**/node_modules/**": true, "**/tmp": { when: "$(basename).x" } }),
      "{**/node_modules/**,**/.git}",
    );
  });

  it("imagePickItems: workspace-relative labels, absolute paths, sorted, no duplicates", () => {
    const items = imagePickItems([
      { path: "/w/proj/shots/b.png", relative: "shots/b.png" },
      { path: "/w/proj/a.gif", relative: "a.gif" },
      { path: "/w/proj/shots/b.png", relative: "shots/b.png" },
      { path: "C:\\w\\p\\img\\c.jpg", relative: "img\\c.jpg" },
      { path: "", relative: "x.png" },
    ]);
    assert.deepEqual(items, [
      { label: "a.gif", path: "/w/proj/a.gif" },
      { label: "img/c.jpg", path: "C:\\w\\p\\img\\c.jpg" },
      { label: "shots/b.png", path: "/w/proj/shots/b.png" },
    ]);
  });
});
