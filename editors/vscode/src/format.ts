/**
 * Pure formatting for the UI: model quick-pick items, the status bar text, the status summary.
 * No vscode import: unit-tested under plain Node.
 */

/** Prices per million tokens, in one currency. */
export interface ModelPrice {
  input?: number;
  cachedInput?: number | null;
  output?: number;
}

/** One entry of `kimi.listModels`. `thinking` is a flag, or the server's "always" | "switchable" | "none". */
export interface ModelInfo {
  id: string;
  contextLength?: number;
  vision?: boolean;
  thinking?: boolean | string;
  tools?: boolean;
  source?: string;
  known?: boolean;
  /** "current", or "retired" (kept only to explain the API's 404; `successor` is what to use instead). */
  status?: string;
  successor?: string;
  goodFor?: string;
  reasoningEffort?: boolean;
  /** Per currency ("USD", "CNY"). */
  prices?: Record<string, ModelPrice | undefined>;
}

export interface ListModelsResult {
  models?: ModelInfo[];
  current?: string;
  error?: string | null;
  /** The account's currency (the region's): which of a model's `prices` applies. */
  currency?: string;
}

export interface ModelPickItem {
  label: string;
  description?: string;
  detail?: string;
  modelId: string;
  current: boolean;
  alwaysShow?: boolean;
  /** A heading between groups (a quick-pick separator), not a model. */
  separator?: boolean;
}

/** 262144 → "256K", 1048576 → "1M", 8000 → "8K", 500 → "500". */
export function formatTokens(n: number | undefined): string | undefined {
  if (typeof n !== "number" || !Number.isFinite(n) || n <= 0) {
    return undefined;
  }
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) {
    return `${n / (1024 * 1024)}M`;
  }
  if (n >= 1000) {
    const k = n % 1024 === 0 ? n / 1024 : n / 1000;
    return `${Number.isInteger(k) ? k : k.toFixed(1).replace(/\.0$/, "")}K`;
  }
  return String(n);
}

export function thinkingLabel(thinking: ModelInfo["thinking"]): string | undefined {
  if (thinking === true || thinking === "always") {
    return "thinking";
  }
  if (thinking === "switchable") {
    return "thinking (switchable)";
  }
  return undefined;
}

const SOURCE_LABELS: Record<string, string> = {
  builtin: "built-in",
  "built-in": "built-in",
  live: "listed by the API",
  api: "listed by the API",
  custom: "from kimi.customModels",
};

export function modelDescription(model: ModelInfo): string {
  const parts: string[] = [];
  const ctx = formatTokens(model.contextLength);
  if (ctx) {
    parts.push(`${ctx} context`);
  }
  if (model.vision) {
    parts.push("vision");
  }
  const thinking = thinkingLabel(model.thinking);
  if (thinking) {
    parts.push(thinking);
  }
  if (model.reasoningEffort) {
    parts.push("reasoning effort (kimi.reasoningEffort)");
  }
  if (model.tools === false) {
    parts.push("no tools");
  }
  return parts.join(" · ");
}

const CURRENCY_SYMBOLS: Record<string, string> = { USD: "$", CNY: "¥" };

/** 0.6 → "$0.60", 0.004 → "$0.004", 27 → "¥27.00"; an unknown currency after the number. */
export function formatPrice(amount: number, currency: string): string {
  let text = amount.toFixed(2);
  if (Math.abs(Number(text) - amount) > 1e-9) {
    text = amount.toFixed(6).replace(/0+$/, "");
  }
  const symbol = CURRENCY_SYMBOLS[currency];
  return symbol ? `${symbol}${text}` : `${text} ${currency}`;
}

/** "$0.60 / $3.00 per M in/out, $0.10 cached" in `currency`, or undefined when the model has no such price. */
export function priceText(model: ModelInfo, currency: string | undefined): string | undefined {
  const price = currency ? model.prices?.[currency] : undefined;
  if (!currency || !price || typeof price.input !== "number" || typeof price.output !== "number") {
    return undefined;
  }
  let text = `${formatPrice(price.input, currency)} / ${formatPrice(price.output, currency)} per M in/out`;
  if (typeof price.cachedInput === "number" && price.cachedInput !== price.input) {
    text += `, ${formatPrice(price.cachedInput, currency)} cached`;
  }
  return text;
}

export function isRetired(model: ModelInfo): boolean {
  return model.status === "retired";
}

/** "retired → kimi-k2.6" (or just "retired"). */
export function retiredText(model: ModelInfo): string {
  return model.successor ? `retired → ${model.successor}` : "retired";
}

/** The quick pick's second line: window, capabilities, price in the account's currency, where the entry came from. */
export function modelDetail(model: ModelInfo, currency: string | undefined): string {
  const source = model.source ? SOURCE_LABELS[model.source] ?? model.source : undefined;
  return [modelDescription(model), priceText(model, currency), source].filter((x) => !!x).join(" · ");
}

/**
 * Quick-pick items for `kimi.listModels`' answer; `current` is the model in effect (the server's, else the setting).
 * The model in use first, then the current models in the server's order (what each is good for as the description;
 * window, capabilities and price as the detail), then, under a separator, the retired ones with their successor.
 */
export function modelPickItems(result: ListModelsResult, fallbackCurrent?: string): ModelPickItem[] {
  const current = result.current || fallbackCurrent;
  const seen = new Set<string>();
  const active: ModelPickItem[] = [];
  const retired: ModelPickItem[] = [];
  for (const model of result.models ?? []) {
    if (!model || typeof model.id !== "string" || model.id === "" || seen.has(model.id)) {
      continue;
    }
    seen.add(model.id);
    const old = isRetired(model);
    // "(current)" first: a long goodFor is cut off at the end of the row.
    const description = [model.id === current ? "(current)" : undefined, old ? retiredText(model) : undefined, model.goodFor]
      .filter((x) => !!x)
      .join(" · ");
    const item: ModelPickItem = {
      label: model.id,
      description,
      detail: modelDetail(model, result.currency),
      modelId: model.id,
      current: model.id === current,
    };
    (old && !item.current ? retired : active).push(item);
  }
  // The current model first, the rest in the server's order.
  active.sort((a, b) => Number(b.current) - Number(a.current));
  if (current && !seen.has(current)) {
    active.unshift({ label: current, description: "(current, not in the list)", modelId: current, current: true });
  }
  if (!retired.length) {
    return active;
  }
  return [...active, { label: "retired", modelId: "", current: false, separator: true }, ...retired];
}

/** The extra item offered while the user types an id the list lacks (any id the API serves is allowed). */
export function customModelItem(typed: string, items: readonly ModelPickItem[]): ModelPickItem | undefined {
  const id = typed.trim();
  if (id === "" || /\s/.test(id) || items.some((i) => !i.separator && i.modelId === id)) {
    return undefined;
  }
  return { label: id, description: "use this model id", modelId: id, current: false, alwaysShow: true };
}

/** `kimi.status` answer (never contains the key). */
export interface ServerStatus {
  model?: string;
  region?: string;
  baseUrl?: string;
  keySource?: string | null;
  keyPresent?: boolean;
  version?: string;
  running?: number | unknown[] | boolean;
  offline?: string | null;
  currency?: string;
  /** What this session's answers used and cost; `text` is the server's summary line. */
  session?: { answers?: number; text?: string; unpriced?: number } | null;
  /** The account balance; null (with `balanceError`) when it could not be read. */
  balance?: { amount?: number; currency?: string; text?: string } | null;
  balanceError?: string | null;
  /** Ghost text: the setting, the model, this session's counts and why the server paused it (null: it did not). */
  completion?: {
    enabled?: boolean;
    model?: string;
    requests?: number;
    shown?: number;
    accepted?: number;
    fromCache?: number;
    paused?: string | null;
  } | null;
}

export function statusBarText(model: string, region: string): string {
  return `$(sparkle) ${model} · ${region}`;
}

export function describeKeySource(status: ServerStatus): string {
  if (status.keyPresent === false) {
    return "no API key";
  }
  const source = status.keySource;
  if (!source) {
    return status.keyPresent ? "API key set" : "API key unknown";
  }
  const labels: Record<string, string> = {
    env: "API key from the environment",
    environment: "API key from the environment",
    keychain: "API key from the OS keychain",
    keyring: "API key from the OS keychain",
    settings: "API key from settings",
  };
  return labels[source] ?? `API key from ${source}`;
}

function runningCount(running: ServerStatus["running"]): number | undefined {
  if (typeof running === "number") {
    return running;
  }
  if (Array.isArray(running)) {
    return running.length;
  }
  return undefined;
}

/** One line per fact, for the tooltip and the "Show Status" message. */
export function statusLines(status: ServerStatus): string[] {
  const lines = [`Model: ${status.model ?? "?"}`, `Region: ${status.region ?? "?"}`];
  if (status.baseUrl) {
    lines.push(`Endpoint: ${status.baseUrl}`);
  }
  lines.push(describeKeySource(status));
  const running = runningCount(status.running);
  if (running) {
    lines.push(`${running} request${running === 1 ? "" : "s"} running`);
  }
  if (status.offline) {
    lines.push(status.offline);
  }
  if (status.session && typeof status.session.text === "string" && status.session.text) {
    lines.push(`This session: ${status.session.text}`);
  }
  if (status.balance && typeof status.balance.text === "string" && status.balance.text) {
    lines.push(`Balance: ${status.balance.text}`);
  } else if (status.balanceError) {
    lines.push(`Balance unknown: ${status.balanceError}`);
  }
  if (status.version) {
    lines.push(`kimi-lsp ${status.version}`);
  }
  return lines;
}
