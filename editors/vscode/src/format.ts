/**
 * Pure formatting for the UI: model quick-pick items, the status bar text, the status summary.
 * No vscode import: unit-tested under plain Node.
 */

/** One entry of `kimi.listModels`. `thinking` is a flag, or the server's "always" | "switchable" | "none". */
export interface ModelInfo {
  id: string;
  contextLength?: number;
  vision?: boolean;
  thinking?: boolean | string;
  tools?: boolean;
  source?: string;
  known?: boolean;
}

export interface ListModelsResult {
  models?: ModelInfo[];
  current?: string;
  error?: string | null;
}

export interface ModelPickItem {
  label: string;
  description?: string;
  detail?: string;
  modelId: string;
  current: boolean;
  alwaysShow?: boolean;
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
  if (model.tools === false) {
    parts.push("no tools");
  }
  return parts.join(" · ");
}

/** Quick-pick items for `kimi.listModels`' answer; `current` is the model in effect (the server's, else the setting). */
export function modelPickItems(result: ListModelsResult, fallbackCurrent?: string): ModelPickItem[] {
  const current = result.current || fallbackCurrent;
  const seen = new Set<string>();
  const items: ModelPickItem[] = [];
  for (const model of result.models ?? []) {
    if (!model || typeof model.id !== "string" || model.id === "" || seen.has(model.id)) {
      continue;
    }
    seen.add(model.id);
    const source = model.source ? SOURCE_LABELS[model.source] ?? model.source : undefined;
    items.push({
      label: model.id,
      description: modelDescription(model) + (model.id === current ? "  (current)" : ""),
      detail: source,
      modelId: model.id,
      current: model.id === current,
    });
  }
  // The current model first, the rest in the server's order.
  items.sort((a, b) => Number(b.current) - Number(a.current));
  if (current && !seen.has(current)) {
    items.unshift({ label: current, description: "(current, not in the list)", modelId: current, current: true });
  }
  return items;
}

/** The extra item offered while the user types an id the list lacks (any id the API serves is allowed). */
export function customModelItem(typed: string, items: readonly ModelPickItem[]): ModelPickItem | undefined {
  const id = typed.trim();
  if (id === "" || /\s/.test(id) || items.some((i) => i.modelId === id)) {
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
  if (status.version) {
    lines.push(`kimi-lsp ${status.version}`);
  }
  return lines;
}
