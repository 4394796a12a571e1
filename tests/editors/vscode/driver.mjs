// Drives code-server (real VS Code in the browser) in Chromium with Playwright, one step at a time.
//
// tests/editors/test_vscode.py starts this with `node driver.mjs` and talks JSON lines over stdin/stdout:
//   → {"step": "explain", "fromLine": 2, "toLine": 5, ...}
//   ← {"ok": true, ...step results}   or   {"ok": false, "error": "...", "screenshot": "..."}
// Every step saves a screenshot named after it in $ARTIFACTS. Environment:
//   PLAYWRIGHT_NODE_PATH  node_modules folder holding playwright-core
//   CHROMIUM              the browser binary (default /usr/bin/chromium)
//   ARTIFACTS             screenshot folder
//   BROWSER_PROFILE       a fresh Chromium user-data folder
import { createRequire } from "node:module";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";

const require = createRequire(path.join(process.env.PLAYWRIGHT_NODE_PATH, "/"));
const { chromium } = require("playwright-core");

const ARTIFACTS = process.env.ARTIFACTS;
const STEP_TIMEOUT = 45_000;
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** Monaco renders spaces as U+00A0. */
const plain = (text) => text.replace(/\u00a0/g, " ");

let context;
let page;

async function shot(name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

async function waitUntil(what, fn, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) {
      return last;
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
}

function editorText() {
  return page
    .locator(".editor-group-container.active .monaco-editor .view-lines")
    .first()
    .innerText()
    .then(plain);
}

/** The active editor's lines, blank ones included (innerText drops them), top first. */
async function editorLines() {
  const lines = await page
    .locator(".editor-group-container.active .monaco-editor .view-lines")
    .first()
    .locator(".view-line")
    .evaluateAll((els) => els.map((e) => ({ top: parseFloat(e.style.top) || 0, text: e.textContent ?? "" })));
  return lines.sort((a, b) => a.top - b.top).map((l) => plain(l.text));
}

/** The active editor's lines without any ghost text (inline suggestions are rendered inside the lines). */
async function realLines() {
  const lines = await page
    .locator(".editor-group-container.active .monaco-editor .view-lines")
    .first()
    .locator(".view-line")
    .evaluateAll((els) =>
      els.map((e) => {
        const copy = e.cloneNode(true);
        copy.querySelectorAll('[class*="ghost-text"]').forEach((g) => g.remove());
        return { top: parseFloat(e.style.top) || 0, text: copy.textContent ?? "" };
      }),
    );
  return lines.sort((a, b) => a.top - b.top).map((l) => plain(l.text));
}

async function statusBarKimi() {
  const items = await page.locator(".statusbar-item").allInnerTexts();
  return items.map((t) => t.trim()).find((t) => /·/.test(t) && /(international|china)/.test(t));
}

/** The ghost-text status bar item's text ("Kimi ghost text", "… paused", "… 30 min"). */
async function completionStatus() {
  const items = await page.locator(".statusbar-item").allInnerTexts();
  return items.map((t) => t.trim()).find((t) => t.includes("Kimi ghost text"));
}

/** Run a command from the palette by its full title ("Kimi: Explain Selection"). */
async function runCommand(title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await input.waitFor({ state: "visible" });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ state: "visible" });
  await row.click();
}

/** Put the cursor on line `from` (1-based), column 1, and extend the selection to the start of line `to + 1`. */
async function selectLines(from, to) {
  await gotoLine(from);
  for (let i = from; i <= to; i++) {
    await page.keyboard.press("Shift+ArrowDown");
  }
}

/** Ctrl+. until the code action menu shows `title` (the server answers codeAction asynchronously). */
async function openCodeActions(title, prepare) {
  const item = page.locator(".action-widget .monaco-list-row.action", { has: page.locator(".title", { hasText: title }) });
  for (let attempt = 1; ; attempt++) {
    await prepare(); // (again): Escape on a retry also drops the editor's selection
    await page.keyboard.press("Control+Period");
    try {
      await item.first().waitFor({ state: "visible", timeout: 8000 });
      return item.first();
    } catch (err) {
      if (attempt === 3) {
        throw err;
      }
      await page.keyboard.press("Escape");
    }
  }
}

/** Put the cursor at the start of `line` (1-based), no selection. */
async function gotoLine(line) {
  await page.locator(".editor-group-container.active .monaco-editor .view-lines").first().click();
  await page.keyboard.press("Control+G");
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await input.waitFor({ state: "visible" });
  await input.fill(`:${line}`);
  await page.keyboard.press("Enter");
  await input.waitFor({ state: "hidden" });
}

async function quickPickRows() {
  return page.locator(".quick-input-widget .monaco-list-row").evaluateAll((rows) =>
    rows.map((r) => {
      const box = r.querySelector('[role="checkbox"], input[type="checkbox"]');
      return {
        label: r.querySelector(".label-name")?.textContent?.trim() ?? "",
        description: r.querySelector(".label-description")?.textContent?.trim() ?? "",
        aria: r.getAttribute("aria-label") ?? "",
        checked: box ? box.getAttribute("aria-checked") === "true" || box.checked === true : undefined,
      };
    }),
  );
}

function quickPickRow(label) {
  return page.locator(".quick-input-widget .monaco-list-row").filter({
    has: page.locator(".label-name", { hasText: new RegExp(`^\\s*${label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`) }),
  }).first();
}

async function clickQuickPickRow(label) {
  const row = quickPickRow(label);
  await row.waitFor({ state: "visible" });
  await row.click();
}

/**
 * The code lenses of the active editor, as their texts ("Kimi: explained · hover to read", "re-run", …): links,
 * and the labels of lenses without a command (spans), not the " | " between them.
 */
function codeLensTexts() {
  return page
    .locator(".editor-group-container.active .monaco-editor .codelens-decoration > a, .editor-group-container.active .monaco-editor .codelens-decoration > span")
    .allInnerTexts()
    .then((texts) => texts.map((t) => plain(t).trim()).filter((t) => t && t !== "|"));
}

/** The diff editor showing a proposal, if one is open: its title and the text of each side. */
async function diffEditor() {
  const editor = page.locator(".monaco-diff-editor").first();
  if (!(await editor.isVisible().catch(() => false))) {
    return undefined;
  }
  const side = async (which) =>
    plain(await editor.locator(`.editor.${which} .view-lines:not(.line-delete)`).first().innerText().catch(() => ""));
  const titles = await page.locator(".tabs-container .tab.active .label-name").allInnerTexts();
  return { modified: await side("modified"), original: await side("original"), titles };
}

async function cursorLine() {
  const item = await page.locator(".statusbar-item", { hasText: /Ln \d+, Col \d+/ }).first().innerText().catch(() => "");
  const m = /Ln (\d+)/.exec(item);
  return m ? Number(m[1]) : undefined;
}

/** The text of the Kimi answers panel (a webview: an iframe inside an iframe). */
async function panelText() {
  for (const frame of page.frames()) {
    try {
      const entries = frame.locator("#entries");
      if ((await entries.count()) > 0) {
        return plain(await entries.innerText());
      }
    } catch {
      // a frame that navigated away meanwhile
    }
  }
  return undefined;
}

const steps = {
  async launch({ url, width = 1400, height = 900 }) {
    const browser = await chromium.launchPersistentContext(process.env.BROWSER_PROFILE, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      viewport: { width, height },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    context = browser;
    page = context.pages()[0] ?? (await context.newPage());
    await page.goto(url);
    await page.locator(".monaco-workbench").waitFor({ timeout: 90_000 });
    // The extension activates on startup and shows the model; the server answers kimi.status.
    const status = await waitUntil("the Kimi status bar item", statusBarKimi, 90_000);
    return { status };
  },

  async openFile({ name, expect }) {
    await page.keyboard.press("Control+P");
    const input = page.locator(".quick-input-widget .quick-input-box input");
    await input.waitFor({ state: "visible" });
    await input.fill(name);
    // Click the row of that file: Enter would take whichever row is focused while the list still filters
    // (a recently opened file).
    await clickQuickPickRow(name);
    const text = await waitUntil(`${name} in the editor`, async () => {
      const t = await editorText().catch(() => "");
      return t.includes(expect) ? t : undefined;
    });
    return { text, screenshot: await shot("01-file-open") };
  },

  /** Ctrl+. on the selected lines, click the code action by title. */
  async codeAction({ fromLine, toLine, title, screenshot }) {
    const item = await openCodeActions(title, () => selectLines(fromLine, toLine));
    const titles = await page.locator(".action-widget .monaco-list-row.action .title").allInnerTexts();
    const menu = await shot(`${screenshot}-menu`);
    await item.click();
    return { titles, menu };
  },

  /** Wait for an edit to land. With kimi.previewEdits "auto" VS Code may show its Refactor Preview: apply it. */
  async waitForEdit({ expect, screenshot }) {
    let previewed = false;
    const preview = {};
    const text = await waitUntil(`"${expect}" in the editor`, async () => {
      const t = await editorText().catch(() => "");
      if (t.includes(expect)) {
        return t;
      }
      const pane = page.locator(".bulk-edit-panel").first();
      const apply = pane.locator("a, button", { hasText: /^Apply$/ });
      if (!previewed && (await apply.count())) {
        // Edits that need confirmation start unticked: tick them (as a user would), then Apply.
        previewed = true;
        await shot(`${screenshot}-preview`);
        const unticked = pane.locator('[role="checkbox"][aria-checked="false"]');
        preview.unticked = await unticked.count();
        for (let i = 0; i < 20 && (await unticked.count()) > 0; i++) {
          await unticked.first().click();
        }
        await shot(`${screenshot}-preview-ticked`);
        await apply.first().click();
      }
      return undefined;
    });
    return { text, lines: await editorLines(), previewed, preview, screenshot: await shot(screenshot) };
  },

  async command({ title, fromLine, toLine }) {
    if (fromLine) {
      await selectLines(fromLine, toLine ?? fromLine);
    }
    await runCommand(title);
    return {};
  },

  async waitForPanel({ expect, screenshot = "panel" }) {
    const text = await waitUntil(`"${expect}" in the Kimi panel`, async () => {
      const t = await panelText();
      return t && t.includes(expect) ? t : undefined;
    });
    await page.waitForTimeout(300); // let the last coalesced render paint before the screenshot
    return { text, screenshot: await shot(screenshot) };
  },

  /** Open the Problems panel and wait until it shows `expect` (or no longer shows `absent`). */
  async problems({ expect, absent, screenshot }) {
    const panel = page.locator(".markers-panel");
    if (!(await panel.first().isVisible().catch(() => false))) {
      await page.keyboard.press("Control+Shift+M");
    }
    await panel.first().waitFor({ state: "visible" });
    const text = await waitUntil(`the Problems panel to ${expect ? `show "${expect}"` : `drop "${absent}"`}`, async () => {
      const t = plain(await panel.first().innerText());
      const good = expect ? t.includes(expect) : !t.includes(absent);
      return good ? t || "(empty)" : undefined;
    });
    return { text, screenshot: await shot(screenshot) };
  },

  /** Click the status bar item, pick `model` in the quick pick, then `target` (Workspace/User). */
  async selectModel({ model, target, screenshot }) {
    const item = page.locator(".statusbar-item", { hasText: /·\s*(international|china)/ }).first();
    await item.click();
    const input = page.locator(".quick-input-widget .quick-input-box input");
    await input.waitFor({ state: "visible" });
    await waitUntil("the model list", async () => (await quickPickRows()).some((r) => r.label === model));
    const rows = await quickPickRows();
    const title = await page.locator(".quick-input-widget .quick-input-title").innerText().catch(() => "");
    await shot(`${screenshot}-models`);
    await clickQuickPickRow(model);
    await waitUntil("the settings target pick", async () => (await quickPickRows()).some((r) => r.label === target));
    const targets = await quickPickRows();
    await shot(`${screenshot}-target`);
    await clickQuickPickRow(target);
    const status = await waitUntil(`${model} in the status bar`, async () => {
      const s = await statusBarKimi();
      return s && s.includes(model) ? s : undefined;
    });
    return { rows, title, targets, status, screenshot: await shot(screenshot) };
  },

  /** A quick fix whose command is the client-side kimi.enterApiKey: type the key into the password box. */
  async enterKeyViaQuickFix({ line, title, key, screenshot }) {
    const item = await openCodeActions(title, () => gotoLine(line));
    await shot(`${screenshot}-menu`);
    await item.click();
    const input = page.locator(".quick-input-widget .quick-input-box input");
    await input.waitFor({ state: "visible" });
    const type = await input.getAttribute("type");
    const prompt = await page.locator(".quick-input-widget .quick-input-message").innerText().catch(() => "");
    await input.fill(key);
    await shot(`${screenshot}-input`);
    await page.keyboard.press("Enter");
    return { inputType: type, prompt };
  },

  /** Right-click in the editor, open the "Kimi" submenu, list its items, close the menu. */
  async contextMenu({ line, submenu, screenshot }) {
    await selectLines(line, line);
    const lines = page.locator(".editor-group-container.active .monaco-editor .view-lines").first();
    const box = await lines.boundingBox();
    await page.mouse.click(box.x + 40, box.y + 10 + (line - 1) * 19, { button: "right" });
    const entry = page.locator(".monaco-menu .action-item", { hasText: new RegExp(`^\\s*${submenu}\\s*$`) }).first();
    await entry.waitFor({ state: "visible" });
    await entry.hover();
    const items = await waitUntil(`the ${submenu} submenu`, async () => {
      const labels = await page.locator(".monaco-menu .action-label").allInnerTexts();
      return labels.some((l) => l.includes("Explain Selection")) ? labels.map((l) => l.trim()).filter(Boolean) : undefined;
    });
    const file = await shot(screenshot);
    await page.keyboard.press("Escape");
    await page.keyboard.press("Escape");
    return { items, screenshot: file };
  },

  /**
   * The quick pick that is open (or opening): wait for rows labelled `labels`, then pick them: click the row
   * (single pick), or tick each row's checkbox and accept with OK (`many`, a canPickMany pick).
   */
  async pickQuickPick({ labels, many = false, screenshot = "quick-pick" }) {
    const input = page.locator(".quick-input-widget .quick-input-box input");
    await input.waitFor({ state: "visible" });
    await waitUntil(`the quick pick rows ${labels.join(", ")}`, async () => {
      const rows = await quickPickRows();
      return labels.every((l) => rows.some((r) => r.label === l));
    });
    const rows = await quickPickRows();
    const title = await page.locator(".quick-input-widget .quick-input-title").innerText().catch(() => "");
    const placeholder = await input.getAttribute("placeholder");
    await shot(`${screenshot}-pick`);
    if (!many) {
      await clickQuickPickRow(labels[0]);
      return { rows, title, placeholder };
    }
    for (const label of labels) {
      const row = quickPickRow(label);
      await row.locator('[role="checkbox"], input[type="checkbox"]').first().click();
      await waitUntil(`${label} ticked`, async () => (await quickPickRows()).find((r) => r.label === label)?.checked);
    }
    const ticked = await quickPickRows();
    await shot(`${screenshot}-ticked`);
    const ok = page.locator(".quick-input-widget .monaco-button", { hasText: /^\s*OK\s*$/ }).first();
    if (await ok.isVisible().catch(() => false)) {
      await ok.click();
    } else {
      await input.press("Enter");
    }
    return { rows, ticked, title, placeholder };
  },

  /** An input box that is open (or opening) and whose prompt includes `prompt`: type `text`, press Enter. */
  async typeInput({ prompt, text, screenshot = "input" }) {
    const input = page.locator(".quick-input-widget .quick-input-box input");
    const message = await waitUntil(`an input box asking "${prompt}"`, async () => {
      if (!(await input.isVisible().catch(() => false))) {
        return undefined;
      }
      const m = await page.locator(".quick-input-widget .quick-input-message").innerText().catch(() => "");
      return m.includes(prompt) ? m : undefined;
    });
    await input.fill(text);
    await shot(`${screenshot}-input`);
    await input.press("Enter");
    return { message };
  },

  /** Wait until the active editor shows a code lens `expect` (or none `absent`); list them. */
  async codeLenses({ expect, absent, screenshot = "code-lenses" }) {
    const lenses = await waitUntil(`code lens ${expect ? `"${expect}"` : `without "${absent}"`}`, async () => {
      const texts = await codeLensTexts();
      const good = expect ? texts.includes(expect) : !texts.includes(absent);
      return good ? texts : undefined;
    });
    return { lenses, screenshot: await shot(screenshot) };
  },

  /** Click the first code lens titled `title` in the active editor (`exact`: the whole title, not a part). */
  async clickCodeLens({ title, exact = false, screenshot = "code-lens-clicked" }) {
    const name = exact ? new RegExp(`^\\s*${title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`) : title;
    const lens = page.locator(".editor-group-container.active .monaco-editor .codelens-decoration a", { hasText: name }).first();
    await lens.waitFor({ state: "visible" });
    await lens.click();
    return { screenshot: await shot(screenshot) };
  },

  /**
   * A proposal under review in the active editor: wait for the code lens `lens` (and `diff` in the diff editor
   * opened beside, if given), or for no lens `absent`; then report the lenses, the file's text (ghost text of the
   * proposal included, as Monaco renders injected text inline), the gutter marks, whether the tab is dirty and the
   * two sides of the proposal's diff editor.
   */
  async proposal({ lens, absent, diff, noDiff = false, screenshot = "proposal" }) {
    const state = await waitUntil(
      lens ? `the code lens "${lens}"${diff ? ` and "${diff}" in the diff beside` : ""}` : `no code lens "${absent}"`,
      async () => {
        const lenses = await codeLensTexts();
        if (lens && !lenses.includes(lens)) return undefined;
        if (absent && lenses.includes(absent)) return undefined;
        const d = await diffEditor();
        if (diff && !(d && d.modified.includes(diff))) return undefined;
        if (noDiff && d) return undefined;
        return { lenses, diff: d };
      },
    );
    const active = page.locator(".editor-group-container.active .monaco-editor").first();
    const box = await active.boundingBox();
    if (box) {
      await page.mouse.move(box.x + box.width / 2, box.y + box.height - 5); // no hover or tooltip in the shot
    }
    await page.waitForTimeout(400); // decorations and the diff's colouring paint after the lenses
    const marks = await active.locator(".cgmr").count();
    // Ghost text is injected with CSS (::after / ::before content), not in the DOM's text.
    const ghosts = await active.locator(".view-lines span").evaluateAll((els) =>
      els.flatMap((e) =>
        ["::before", "::after"]
          .map((pseudo) => getComputedStyle(e, pseudo).content)
          .filter((c) => c && c !== "none" && c !== "normal")
          .map((c) => JSON.parse(c.startsWith('"') ? c : JSON.stringify(c))),
      ),
    );
    const dirty = await page.locator(".editor-group-container.active .tab.active.dirty").count();
    const tabs = await page.locator(".tabs-container .tab .label-name").allInnerTexts();
    const text = await editorText();
    return { ...state, text, lines: await editorLines(), ghosts: ghosts.map(plain), marks, dirty: dirty > 0, tabs, screenshot: await shot(screenshot) };
  },

  /** Press keys in the active editor (e.g. a keybinding), after putting the cursor on `line` if given; report the cursor's line. */
  async keys({ keys = [], line, type, screenshot = "keys" }) {
    if (line) {
      await gotoLine(line); // focuses the editor too
    }
    for (const k of keys) {
      await page.keyboard.press(k);
      await page.waitForTimeout(150);
    }
    if (type) {
      await page.keyboard.type(type);
    }
    return { line: await cursorLine(), screenshot: await shot(screenshot) };
  },

  /** The cursor's line in the active editor (1-based, from the status bar's "Ln 3, Col 1"). */
  async cursor() {
    return { line: await cursorLine() };
  },

  /** The Kimi panel's answers, top first: their data-id and text. */
  async panelEntries() {
    for (const frame of page.frames()) {
      try {
        const sections = frame.locator("#entries section.entry");
        if ((await frame.locator("#entries").count()) > 0) {
          const entries = await sections.evaluateAll((els) =>
            els.map((e) => ({
              id: e.dataset.id,
              thread: e.dataset.thread,
              text: e.innerText,
              turns: [...e.querySelectorAll("article.turn")].map((t) => t.innerText),
              applyButtons: e.querySelectorAll("button.apply").length,
              followUp: !!e.querySelector(".follow-up textarea"),
            })),
          );
          return { entries: entries.map((e) => ({ ...e, text: plain(e.text), turns: e.turns.map(plain) })) };
        }
      } catch {
        // a frame that navigated away meanwhile
      }
    }
    return { entries: [] };
  },

  /** Wait until the Kimi status bar item shows `expect` (e.g. a model set in the settings file). */
  async waitForStatus({ expect }) {
    const status = await waitUntil(`"${expect}" in the status bar`, async () => {
      const s = await statusBarKimi();
      return s && s.includes(expect) ? s : undefined;
    });
    return { status };
  },

  async statusBar() {
    return { status: await statusBarKimi() };
  },

  /** Wait for a notification toast showing `expect`; click its button `click` if given. */
  async notification({ expect, click, screenshot = "notification" }) {
    const toast = page.locator(".notification-toast", { hasText: expect }).first();
    await toast.waitFor({ state: "visible" });
    const text = plain(await toast.innerText());
    const buttons = (await toast.locator(".monaco-button").allInnerTexts()).map((t) => t.trim()).filter(Boolean);
    const file = await shot(screenshot);
    if (click) {
      await toast.locator(".monaco-button", { hasText: new RegExp(`^\\s*${click}\\s*$`) }).first().click();
      await toast.waitFor({ state: "hidden" });
    }
    return { text, buttons, screenshot: file };
  },

  /**
   * Ghost text: put the cursor at the end of `line`, type `type` as a user would, wait for Monaco's inline
   * suggestion showing `expect`; then (`accept`) press Tab and wait until the suggestion is part of the text.
   */
  async ghostText({ line, type = "", expect, accept = false, screenshot = "ghost-text" }) {
    await gotoLine(line);
    await page.keyboard.press("End");
    await page.keyboard.type(type, { delay: 60 });
    const ghostLocator = page.locator('.editor-group-container.active .monaco-editor .view-lines [class*="ghost-text"]');
    const ghost = await waitUntil(`ghost text "${expect}"`, async () => {
      const text = plain((await ghostLocator.allInnerTexts()).join(""));
      return text.includes(expect) ? text : undefined;
    });
    await page.waitForTimeout(300);
    const shown = await shot(screenshot);
    const completion = await completionStatus();
    const result = { ghost, shown, completion, lines: await editorLines() };
    if (accept) {
      const before = (await realLines())[line - 1] ?? "";
      await page.keyboard.press("Tab");
      // The text itself, ghost text left out: the model may well offer the next ghost text at once.
      result.accepted = await waitUntil("the ghost text accepted", async () => {
        const lines = await realLines();
        return lines[line - 1] !== before && lines[line - 1]?.includes(expect) ? lines : undefined;
      });
      result.acceptedShot = await shot(`${screenshot}-accepted`);
    }
    return result;
  },

  /** The ghost-text status bar item: wait until it shows `expect` (and not `absent`); or click it (`click`). */
  async completionItem({ expect, absent, click = false, screenshot = "completion-item" }) {
    if (click) {
      await page.locator(".statusbar-item", { hasText: "Kimi ghost text" }).first().click();
      return { screenshot: await shot(screenshot) };
    }
    const text = await waitUntil(`"${expect}" in the ghost-text item`, async () => {
      const t = await completionStatus();
      return t && t.includes(expect) && !(absent && t.includes(absent)) ? t : undefined;
    });
    return { text, screenshot: await shot(screenshot) };
  },

  /**
   * In the Kimi panel, the follow-up box of the conversation showing `contains` (the top one by default): type
   * `suggest` and wait for the suggestion `expectSuggestion` (accepted with Tab: the box's text is returned), then
   * replace the text with `text` and press Enter.
   */
  async panelFollowUp({ contains, suggest, expectSuggestion, text, screenshot = "panel-follow-up" }) {
    const { frame, box } = await waitUntil("a follow-up box in the Kimi panel", async () => {
      for (const f of page.frames()) {
        try {
          if ((await f.locator("#entries").count()) === 0) continue;
          let section = f.locator("#entries section.entry");
          if (contains) section = section.filter({ hasText: contains });
          const box = section.first().locator(".follow-up textarea");
          if ((await box.count()) > 0 && (await box.isEnabled())) return { frame: f, box };
        } catch {
          // a frame that navigated away meanwhile
        }
      }
      return undefined;
    });
    const out = {};
    if (suggest) {
      await box.click();
      await box.pressSequentially(suggest, { delay: 40 });
      const item = frame.locator(".suggest li", { hasText: expectSuggestion }).first();
      await item.waitFor({ state: "visible" });
      out.suggestions = (await frame.locator(".suggest li").allInnerTexts()).map((t) => t.trim());
      out.suggestShot = await shot(`${screenshot}-suggest`);
      await box.press("Tab");
      out.afterSuggestion = await box.inputValue();
      await box.fill("");
    }
    await box.click();
    await box.pressSequentially(text, { delay: 20 });
    out.typedShot = await shot(`${screenshot}-typed`);
    await box.press("Enter");
    return out;
  },

  /** Click the `index`-th "Apply" button of the Kimi panel's top conversation. */
  async panelApply({ index = 0, screenshot = "panel-apply" }) {
    const button = await waitUntil("an Apply button in the Kimi panel", async () => {
      for (const f of page.frames()) {
        try {
          if ((await f.locator("#entries").count()) === 0) continue;
          const b = f.locator("#entries section.entry").first().locator("button.apply");
          if ((await b.count()) > index) return b.nth(index);
        } catch {
          // a frame that navigated away meanwhile
        }
      }
      return undefined;
    });
    await button.click();
    return { screenshot: await shot(screenshot) };
  },

  /** Hide the bottom panel (Problems, Output, …) if it is open, for a tidy screenshot. */
  async hidePanel() {
    const panel = page.locator(".part.panel.bottom, .part.panel.basepanel.bottom").first();
    if (await panel.isVisible().catch(() => false)) {
      await runCommand("View: Hide Panel");
      await panel.waitFor({ state: "hidden" });
    }
    return {};
  },

  /** Debugging aid: the class names and text of the elements matching `selector`. */
  async query({ selector }) {
    const found = await page.locator(selector).evaluateAll((els) =>
      els.slice(0, 20).map((e) => ({ cls: e.className, text: e.innerText?.slice(0, 300), visible: !!e.offsetParent })),
    );
    return { found };
  },

  async screenshot({ name }) {
    return { screenshot: await shot(name) };
  },

  async close() {
    await context?.close();
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) {
    continue;
  }
  let request;
  let reply;
  try {
    request = JSON.parse(line);
    const fn = steps[request.step];
    if (!fn) {
      throw new Error(`unknown step ${request.step}`);
    }
    reply = { ok: true, ...(await fn(request)) };
  } catch (err) {
    reply = { ok: false, error: String(err?.stack || err) };
    try {
      reply.screenshot = page ? await shot(`failed-${request?.step ?? "step"}`) : undefined;
      reply.dom = page ? plain(await page.locator(".monaco-workbench").innerText()).slice(0, 4000) : undefined;
    } catch {
      // the page is gone
    }
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
  if (request?.step === "close") {
    break;
  }
}
process.exit(0);
