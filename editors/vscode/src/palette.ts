/**
 * Pure helpers of the palette commands that go beyond a selection: custom actions (`kimi.actions`), the comment
 * width of "Explain as Comment", the workspace images of "Ask About Images…".
 * No vscode import: unit-tested under plain Node.
 */

export type ActionOutput = "replace" | "insertBefore" | "insertAfter" | "show";

/** One `kimi.actions` entry (the server's `CustomAction`; `output` defaults to "show"). */
export interface CustomAction {
  id: string;
  title: string;
  prompt: string;
  output: ActionOutput;
}

const OUTPUTS: ReadonlySet<string> = new Set(["replace", "insertBefore", "insertAfter", "show"]);
const ACTION_ID = /^[A-Za-z0-9_.-]+$/;

/**
 * The usable actions of a `kimi.actions` value, in order. Entries the server would reject (no id, title or prompt,
 * a bad id or output) are left out, and so are later duplicates of an id (the server runs the first).
 */
export function customActions(raw: unknown): CustomAction[] {
  const actions: CustomAction[] = [];
  const seen = new Set<string>();
  for (const a of Array.isArray(raw) ? raw : []) {
    if (!a || typeof a !== "object") {
      continue;
    }
    const { id, title, prompt, output = "show" } = a as Record<string, unknown>;
    if (typeof id !== "string" || !ACTION_ID.test(id) || seen.has(id)) {
      continue;
    }
    if (typeof title !== "string" || !title || typeof prompt !== "string" || !prompt) {
      continue;
    }
    if (typeof output !== "string" || !OUTPUTS.has(output)) {
      continue;
    }
    seen.add(id);
    actions.push({ id, title, prompt, output: output as ActionOutput });
  }
  return actions;
}

const OUTPUT_DESCRIPTIONS: Record<ActionOutput, string> = {
  replace: "replaces the selection",
  insertBefore: "inserts above the selection",
  insertAfter: "inserts below the selection",
  show: "answers in the Kimi panel",
};

export interface ActionPickItem {
  label: string;
  description: string;
  detail: string;
  action: CustomAction;
}

/** Quick-pick items: the title (without a leading "Kimi:"), what it does with the answer, its id. */
export function actionPickItems(actions: readonly CustomAction[]): ActionPickItem[] {
  return actions.map((action) => ({
    label: action.title.replace(/^Kimi:\s*/, "") || action.title,
    description: OUTPUT_DESCRIPTIONS[action.output],
    detail: action.id,
    action,
  }));
}

/** Whether the action's prompt takes an `{instruction}` (then the user is asked for one). */
export function needsInstruction(action: CustomAction): boolean {
  return action.prompt.includes("{instruction}");
}

/** The server accepts comment widths in this range (`width` of kimi.explainAsComment). */
export const MIN_WIDTH = 20;
export const MAX_WIDTH = 1000;

/**
 * The `width` for kimi.explainAsComment: the editor's first ruler (`editor.rulers`: numbers or `{column}`), else
 * `wordWrapColumn` (the caller passes it only when it is in effect: set by the user, or used by `editor.wordWrap`);
 * undefined (the server's default) when neither is a usable width.
 */
export function commentWidth(rulers: unknown, wordWrapColumn?: unknown): number | undefined {
  const first = Array.isArray(rulers) && rulers.length ? rulers[0] : undefined;
  const ruler = typeof first === "object" && first !== null ? (first as { column?: unknown }).column : first;
  for (const candidate of [ruler, wordWrapColumn]) {
    if (typeof candidate === "number" && Number.isInteger(candidate) && candidate >= MIN_WIDTH && candidate <= MAX_WIDTH) {
      return candidate;
    }
  }
  return undefined;
}

/** What "Ask About Images…" looks for (the server's image types), and how many files it lists at most. */
export const IMAGE_GLOB = "**/*.{png,jpg,jpeg,webp,gif,PNG,JPG,JPEG,WEBP,GIF}";
export const MAX_IMAGES = 500;

/**
 * The exclude glob for the image search: node_modules plus the `files.exclude` patterns that are on (a glob given
 * to findFiles replaces `files.exclude`, so they are carried over). Patterns with braces or commas cannot nest in
 * a `{…}` group and are left to the server, which refuses what it must not read anyway.
 */
export function imageExcludeGlob(filesExclude: unknown): string {
  const patterns = ["**/node_modules/**"];
  if (filesExclude && typeof filesExclude === "object") {
    for (const [pattern, on] of Object.entries(filesExclude as Record<string, unknown>)) {
      if (on === true && pattern && !/[{},]/.test(pattern) && !patterns.includes(pattern)) {
        patterns.push(pattern);
      }
    }
  }
  return patterns.length === 1 ? patterns[0] : `{${patterns.join(",")}}`;
}

export interface ImageFile {
  /** The absolute file-system path: what kimi.ask's `images` gets (the server resolves it inside the workspace). */
  path: string;
  /** The path relative to its workspace folder (prefixed with the folder's name in a multi-root workspace). */
  relative: string;
}

export interface ImagePickItem {
  label: string;
  path: string;
}

/** Quick-pick items for the images found: shown by their workspace-relative path, sorted, no duplicates. */
export function imagePickItems(files: readonly ImageFile[]): ImagePickItem[] {
  const seen = new Set<string>();
  const items: ImagePickItem[] = [];
  for (const f of files) {
    if (!f.path || seen.has(f.path)) {
      continue;
    }
    seen.add(f.path);
    items.push({ label: f.relative.replace(/\\/g, "/"), path: f.path });
  }
  return items.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
}
