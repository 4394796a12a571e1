/**
 * The ghost-text status bar item: on, off (the `kimi.completion.enabled` setting), snoozed (client-side, for a
 * while) or paused by the server (`kimi.status`'s `completion.paused`, e.g. after a rate-limit 429), and the
 * choices its click offers. No vscode import: unit-tested under plain Node.
 */

export const SNOOZE_MINUTES = 30;

export type CompletionState = "on" | "off" | "snoozed" | "paused";

export interface CompletionInputs {
  /** The effective `kimi.completion.enabled`. */
  enabled: boolean;
  /** Epoch ms until which automatic completions are snoozed (0 / undefined: not snoozed). */
  snoozedUntil?: number;
  now: number;
  /** The server's reason completions are paused, from `kimi.status` (null: not paused). */
  paused?: string | null;
  /** The completion model, from `kimi.status` or the setting. */
  model?: string;
  /** Counts from `kimi.status`'s `completion`. */
  shown?: number;
  accepted?: number;
  /** The workspace sets `kimi.completion.enabled` (so the user setting the toggle writes does not decide). */
  workspaceValue?: boolean;
}

export interface CompletionView {
  state: CompletionState;
  text: string;
  tooltip: string;
  /** Show the item with the warning background. */
  warn: boolean;
}

export function minutesLeft(until: number | undefined, now: number): number {
  return until && until > now ? Math.max(1, Math.ceil((until - now) / 60000)) : 0;
}

export function completionView(i: CompletionInputs): CompletionView {
  const left = minutesLeft(i.snoozedUntil, i.now);
  const model = i.model ? ` (${i.model})` : "";
  const counts =
    typeof i.shown === "number" ? ` ${i.shown} shown, ${i.accepted ?? 0} accepted this session.` : "";
  const where =
    i.workspaceValue !== undefined ? ` This workspace sets kimi.completion.enabled to ${i.workspaceValue}.` : "";
  if (!i.enabled) {
    return {
      state: "off",
      text: "$(circle-slash) Kimi ghost text",
      tooltip: `Kimi ghost text is off (kimi.completion.enabled is false).${where} Click to turn it on.`,
      warn: false,
    };
  }
  if (left > 0) {
    return {
      state: "snoozed",
      text: `$(clock) Kimi ghost text ${left} min`,
      tooltip: `Kimi ghost text is snoozed for ${left} more minute${left === 1 ? "" : "s"}: nothing is asked as you type (Suggest Next Edit still works). Click to resume or turn it off.`,
      warn: false,
    };
  }
  if (i.paused) {
    return {
      state: "paused",
      text: "$(warning) Kimi ghost text paused",
      tooltip: `Kimi ghost text is on${model} but the server paused it: ${i.paused}.${counts}`,
      warn: true,
    };
  }
  return {
    state: "on",
    text: "$(check) Kimi ghost text",
    tooltip: `Kimi ghost text is on${model}: suggestions appear as you type, Tab accepts.${counts} Click to snooze or turn it off.`,
    warn: false,
  };
}

export type CompletionChoice = "on" | "snooze" | "off" | "nextEdit" | "settings";

/** The quick pick behind the item: what can be done from each state. */
export function completionChoices(state: CompletionState): { label: string; description?: string; choice: CompletionChoice }[] {
  const on = { label: "$(check) Turn On", description: "ghost text as you type", choice: "on" as const };
  const resume = { label: "$(play) Resume Now", description: "end the snooze", choice: "on" as const };
  const snooze = {
    label: `$(clock) Snooze for ${SNOOZE_MINUTES} Minutes`,
    description: "this window, nothing asked as you type",
    choice: "snooze" as const,
  };
  const off = {
    label: "$(circle-slash) Turn Off",
    description: "writes kimi.completion.enabled: false to your user settings",
    choice: "off" as const,
  };
  const next = { label: "$(sparkle) Suggest Next Edit", description: "at the cursor", choice: "nextEdit" as const };
  const settings = { label: "$(gear) Completion Settings", description: "kimi.completion.*", choice: "settings" as const };
  switch (state) {
    case "off":
      return [on, next, settings];
    case "snoozed":
      return [resume, off, next, settings];
    default:
      return [snooze, off, next, settings];
  }
}
