import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { customModelItem, describeKeySource, formatTokens, modelDescription, modelPickItems, statusBarText, statusLines } from "../src/format";

describe("formatTokens", () => {
  const cases: Array<[number | undefined, string | undefined]> = [
    [262144, "256K"],
    [131072, "128K"],
    [8192, "8K"],
    [1048576, "1M"],
    [200000, "200K"],
    [500, "500"],
    [0, undefined],
    [undefined, undefined],
  ];
  for (const [n, text] of cases) {
    it(`${n} → ${text}`, () => assert.equal(formatTokens(n), text));
  }
});

describe("modelDescription", () => {
  const cases: Array<[object, string]> = [
    [{ id: "kimi-k2.5", contextLength: 262144, vision: true, thinking: "switchable", tools: true }, "256K context · vision · thinking (switchable)"],
    [{ id: "kimi-k2-thinking", contextLength: 262144, thinking: "always" }, "256K context · thinking"],
    [{ id: "x", contextLength: 8192, thinking: true }, "8K context · thinking"],
    [{ id: "moonshot-v1-8k-vision-preview", contextLength: 8192, vision: true, thinking: "none", tools: false }, "8K context · vision · no tools"],
    [{ id: "bare" }, ""],
  ];
  for (const [model, text] of cases) {
    it((model as { id: string }).id, () => assert.equal(modelDescription(model as never), text));
  }
});

describe("modelPickItems", () => {
  const models = [
    { id: "kimi-k2.5", contextLength: 262144, vision: true, thinking: "switchable", source: "builtin" },
    { id: "moonshot-v1-32k", contextLength: 32768, thinking: false, source: "live" },
    { id: "moonshot-v1-32k", contextLength: 32768 },
    { id: "" },
  ];

  it("puts the current model first, marks it, drops duplicates and empty ids", () => {
    const items = modelPickItems({ models, current: "moonshot-v1-32k" });
    assert.deepEqual(items.map((i) => i.modelId), ["moonshot-v1-32k", "kimi-k2.5"]);
    assert.equal(items[0].current, true);
    assert.match(items[0].description!, /\(current\)$/);
    assert.equal(items[0].detail, "listed by the API");
    assert.equal(items[1].detail, "built-in");
  });

  it("falls back to the setting's model and lists a current id the server does not know", () => {
    const items = modelPickItems({ models }, "my-finetune");
    assert.equal(items[0].modelId, "my-finetune");
    assert.equal(items[0].current, true);
    assert.equal(items.length, 3);
  });

  it("handles an answer without models", () => {
    assert.deepEqual(modelPickItems({}), []);
  });
});

describe("customModelItem", () => {
  const items = modelPickItems({ models: [{ id: "kimi-k2.5" }] });
  it("offers a typed id the list lacks", () => assert.equal(customModelItem(" my-model ", items)!.modelId, "my-model"));
  it("not for a listed id", () => assert.equal(customModelItem("kimi-k2.5", items), undefined));
  it("not for blank or spaced input", () => {
    assert.equal(customModelItem("  ", items), undefined);
    assert.equal(customModelItem("two words", items), undefined);
  });
});

describe("status", () => {
  it("status bar text", () => assert.equal(statusBarText("kimi-k2.5", "international"), "$(sparkle) kimi-k2.5 · international"));
  it("key source", () => {
    assert.equal(describeKeySource({ keyPresent: false, keySource: null }), "no API key");
    assert.equal(describeKeySource({ keyPresent: true, keySource: "env" }), "API key from the environment");
    assert.equal(describeKeySource({ keyPresent: true, keySource: "keychain" }), "API key from the OS keychain");
    assert.equal(describeKeySource({ keyPresent: true, keySource: "MOONSHOT_API_KEY" }), "API key from MOONSHOT_API_KEY");
  });
  it("status lines", () => {
    assert.deepEqual(
      statusLines({ model: "m", region: "china", baseUrl: "https://api.moonshot.cn/v1", keyPresent: true, keySource: "env", version: "0.1.0", running: 2 }),
      ["Model: m", "Region: china", "Endpoint: https://api.moonshot.cn/v1", "API key from the environment", "2 requests running", "kimi-lsp 0.1.0"],
    );
    assert.deepEqual(statusLines({}), ["Model: ?", "Region: ?", "API key unknown"]);
  });
});
