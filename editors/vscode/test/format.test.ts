import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  customModelItem,
  describeKeySource,
  formatPrice,
  formatTokens,
  ListModelsResult,
  modelDescription,
  modelDetail,
  ModelInfo,
  modelPickItems,
  priceText,
  statusBarText,
  statusLines,
} from "../src/format";

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
    assert.match(items[0].description!, /^\(current\)/);
    assert.equal(items[0].detail, "32K context · listed by the API");
    assert.equal(items[1].detail, "256K context · vision · thinking (switchable) · built-in");
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

// kimi.listModels entries as the server sends them (issue 14): current and retired, with and without prices.
const K26: ModelInfo = {
  id: "kimi-k2.6",
  contextLength: 262144,
  vision: true,
  thinking: "switchable",
  tools: true,
  known: true,
  status: "current",
  goodFor: "Moonshot's recommended model",
  prices: { USD: { input: 0.95, cachedInput: 0.16, output: 4 }, CNY: { input: 6.5, cachedInput: 1.1, output: 27 } },
  source: "builtin",
};
const K25: ModelInfo = {
  id: "kimi-k2.5",
  contextLength: 262144,
  vision: true,
  thinking: "switchable",
  status: "current",
  goodFor: "the default",
  prices: { USD: { input: 0.6, cachedInput: 0.1, output: 3 } },
  source: "builtin",
};
const K3: ModelInfo = {
  id: "kimi-k3",
  contextLength: 1048576,
  vision: true,
  thinking: "always",
  reasoningEffort: true,
  status: "current",
  goodFor: "the largest window",
  prices: { USD: { input: 3, cachedInput: 0.3, output: 15 }, CNY: { input: 20, cachedInput: 2, output: 100 } },
  source: "builtin",
};
const HIGHSPEED: ModelInfo = {
  id: "kimi-k2.7-code-highspeed",
  contextLength: 262144,
  thinking: "always",
  status: "current",
  prices: { CNY: { input: 13, cachedInput: 2.6, output: 54 } },
  source: "builtin",
};
const RETIRED: ModelInfo = { id: "kimi-k2-thinking", contextLength: 262144, thinking: "always", status: "retired", successor: "kimi-k2.6", source: "builtin" };
const V1: ModelInfo = { id: "moonshot-v1-8k", contextLength: 8192, thinking: "none", status: "current", goodFor: "older generation", source: "live" };
const CUSTOM: ModelInfo = { id: "my-finetune", contextLength: 131072, status: "current", prices: { USD: { input: 1, cachedInput: null, output: 2 } }, source: "custom" };

describe("formatPrice", () => {
  const cases: Array<[number, string, string]> = [
    [0.6, "USD", "$0.60"],
    [3, "USD", "$3.00"],
    [0.004, "USD", "$0.004"],
    [27, "CNY", "¥27.00"],
    [1.1, "CNY", "¥1.10"],
    [0.5, "EUR", "0.50 EUR"],
  ];
  for (const [amount, currency, text] of cases) {
    it(`${amount} ${currency} → ${text}`, () => assert.equal(formatPrice(amount, currency), text));
  }
});

describe("priceText: the price in the account's currency", () => {
  const cases: Array<[ModelInfo, string | undefined, string | undefined]> = [
    [K25, "USD", "$0.60 / $3.00 per M in/out, $0.10 cached"],
    [K26, "USD", "$0.95 / $4.00 per M in/out, $0.16 cached"],
    [K26, "CNY", "¥6.50 / ¥27.00 per M in/out, ¥1.10 cached"],
    [K25, "CNY", undefined], // no CNY price published: nothing, never a converted guess
    [HIGHSPEED, "USD", undefined],
    [HIGHSPEED, "CNY", "¥13.00 / ¥54.00 per M in/out, ¥2.60 cached"],
    [CUSTOM, "USD", "$1.00 / $2.00 per M in/out"], // cachedInput null: the input price applies, not repeated
    [V1, "USD", undefined],
    [K26, undefined, undefined], // an older server that names no currency
  ];
  for (const [model, currency, text] of cases) {
    it(`${model.id} in ${currency}`, () => assert.equal(priceText(model, currency), text));
  }
});

describe("modelDetail", () => {
  const cases: Array<[ModelInfo, string | undefined, string]> = [
    [K26, "USD", "256K context · vision · thinking (switchable) · $0.95 / $4.00 per M in/out, $0.16 cached · built-in"],
    [K3, "CNY", "1M context · vision · thinking · reasoning effort (kimi.reasoningEffort) · ¥20.00 / ¥100.00 per M in/out, ¥2.00 cached · built-in"],
    [RETIRED, "USD", "256K context · thinking · built-in"],
    [V1, "USD", "8K context · listed by the API"],
    [CUSTOM, "USD", "128K context · $1.00 / $2.00 per M in/out · from kimi.customModels"],
  ];
  for (const [model, currency, text] of cases) {
    it(`${model.id} (${currency})`, () => assert.equal(modelDetail(model, currency), text));
  }
});

describe("modelPickItems with the Dec-2026 line-up", () => {
  const listed = (current: string, currency = "USD"): ListModelsResult => ({
    models: [K25, K26, RETIRED, HIGHSPEED, K3, { ...RETIRED, id: "kimi-latest", successor: undefined }, V1, CUSTOM],
    current,
    error: null,
    currency,
  });
  const rows = (items: ReturnType<typeof modelPickItems>) => items.map((i) => (i.separator ? `--${i.label}--` : i.modelId));

  it("the model in use first, current models in the server's order, retired ones last under a separator", () => {
    assert.deepEqual(rows(modelPickItems(listed("kimi-k2.6"))), [
      "kimi-k2.6",
      "kimi-k2.5",
      "kimi-k2.7-code-highspeed",
      "kimi-k3",
      "moonshot-v1-8k",
      "my-finetune",
      "--retired--",
      "kimi-k2-thinking",
      "kimi-latest",
    ]);
  });

  const cases: Array<[string, string, string, string | undefined, RegExp | undefined]> = [
    // [current, currency, id, description, detail pattern]
    ["kimi-k2.6", "USD", "kimi-k2.6", "(current) · Moonshot's recommended model", /\$0\.95 \/ \$4\.00 per M in\/out, \$0\.16 cached/],
    ["kimi-k2.6", "CNY", "kimi-k2.6", "(current) · Moonshot's recommended model", /¥6\.50 \/ ¥27\.00 per M in\/out, ¥1\.10 cached/],
    ["kimi-k2.6", "USD", "kimi-k2.5", "the default", /^256K context · vision · thinking \(switchable\) · \$0\.60/],
    ["kimi-k2.6", "CNY", "kimi-k2.5", "the default", /^256K context · vision · thinking \(switchable\) · built-in$/],
    ["kimi-k2.6", "USD", "kimi-k2-thinking", "retired → kimi-k2.6", /^256K context · thinking · built-in$/],
    ["kimi-k2.6", "USD", "kimi-latest", "retired", undefined],
    ["kimi-k2.6", "USD", "moonshot-v1-8k", "older generation", /listed by the API$/],
    ["kimi-k2.6", "USD", "my-finetune", "", /from kimi\.customModels$/],
    // a retired model still set: it stays first and says so
    ["kimi-k2-thinking", "USD", "kimi-k2-thinking", "(current) · retired → kimi-k2.6", undefined],
  ];
  for (const [current, currency, id, description, detail] of cases) {
    it(`${id} (current ${current}, ${currency})`, () => {
      const items = modelPickItems(listed(current, currency));
      const item = items.find((i) => i.modelId === id)!;
      assert.equal(item.description, description);
      if (detail) {
        assert.match(item.detail!, detail);
      }
      assert.equal(item.current, id === current);
    });
  }

  it("a retired model in use is first, and no separator is left dangling", () => {
    const items = modelPickItems({ models: [K25, RETIRED], current: "kimi-k2-thinking", currency: "USD" });
    assert.deepEqual(rows(items), ["kimi-k2-thinking", "kimi-k2.5"]);
  });

  it("no separator without retired models", () => {
    assert.ok(!modelPickItems({ models: [K25, K26], current: "kimi-k2.5" }).some((i) => i.separator));
  });

  it("the separator is no model: a typed id equal to its label is still offered", () => {
    const items = modelPickItems(listed("kimi-k2.6"));
    assert.equal(customModelItem("retired", items)!.modelId, "retired");
    assert.equal(customModelItem("kimi-k2-thinking", items), undefined);
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
  const base = { model: "kimi-k2.6", region: "international", keyPresent: true, keySource: "env" };
  const sessionCases: Array<[string, object, string[]]> = [
    [
      "session and balance",
      {
        currency: "USD",
        session: { answers: 3, text: "3 answers, 4,000 tokens (1,200 cached) · $0.0042", unpriced: 0 },
        balance: { amount: 49.58894, currency: "USD", text: "$49.5889" },
      },
      ["This session: 3 answers, 4,000 tokens (1,200 cached) · $0.0042", "Balance: $49.5889"],
    ],
    [
      "CNY",
      { currency: "CNY", session: { answers: 1, text: "1 answer, 10 tokens · ¥0.0003" }, balance: { amount: 12, currency: "CNY", text: "¥12.0000" } },
      ["This session: 1 answer, 10 tokens · ¥0.0003", "Balance: ¥12.0000"],
    ],
    [
      "the balance could not be read",
      { session: { answers: 0, text: "no answers yet" }, balance: null, balanceError: "the balance endpoint timed out" },
      ["This session: no answers yet", "Balance unknown: the balance endpoint timed out"],
    ],
    ["an older server: neither", {}, []],
  ];
  for (const [name, extra, expected] of sessionCases) {
    it(`status lines: ${name}`, () => {
      assert.deepEqual(statusLines({ ...base, ...extra }).slice(3), expected);
    });
  }
});
