/**
 * Kimi for VS Code: a thin client of the kimi-lsp language server. All behaviour lives in the server; this file
 * starts it, forwards settings, offers palette / context-menu commands that call the server's `kimi.*` commands,
 * renders `kimi/stream` answers in a side panel, shows edits as proposals to review in the file (`kimi/proposal`,
 * see proposalView.ts) and shows the model in the status bar.
 *
 * Command ids are `kimi-vscode.*`: vscode-languageclient registers the server's own `kimi.*` commands itself.
 * The one exception is `kimi.enterApiKey`, a client-side command the server's quick fixes invoke.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as readline from "node:readline";
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ResponseError,
  RevealOutputChannelOn,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import {
  customModelItem,
  ListModelsResult,
  ModelPickItem,
  modelPickItems,
  ServerStatus,
  statusBarText,
  statusLines,
} from "./format";
import {
  actionPickItems,
  ActionPickItem,
  commentWidth,
  customActions,
  IMAGE_GLOB,
  imageExcludeGlob,
  ImagePickItem,
  imagePickItems,
  MAX_IMAGES,
  needsInstruction,
} from "./palette";
import { completionChoices, completionView, SNOOZE_MINUTES } from "./completionStatus";
import { KimiPanel } from "./panel";
import { ProposalView } from "./proposalView";
import type { ProposalNotification } from "./proposals";
import { INSTALL_HINT, resolveServerPath } from "./serverPath";
import { AnswerResult, endMessage, Entry, isShownInPanel, StreamEvent, StreamStore } from "./stream";
import { ThreadDetail, threadEntries, threadPickItems, ThreadSummary } from "./thread";

const SECTION = "kimi";
/** Server commands whose effect changes what the status bar shows. */
const STATUS_COMMANDS = new Set(["kimi.selectModel", "kimi.setRegion", "kimi.setApiKey", "kimi.clearApiKey"]);
/** globalState key: epoch ms until which ghost text is snoozed (every window; survives a reload). */
const SNOOZE_KEY = "kimi.completion.snoozedUntil";
/** At most this many workspace paths are offered after `#file:`. */
const MAX_FILES = 5000;

/** `kimi.nextEdit`'s result: ghost text at the cursor (`inline`), or a proposal / an edit. */
interface NextEditResult extends EditResult {
  inline?: { insertText?: string; range?: unknown; position?: { line: number; character: number } };
  proposed?: boolean;
}

interface EditResult {
  requestId?: string | number;
  applied?: boolean;
  model?: string;
  message?: string;
  error?: { code?: string; message?: string };
}

/** `kimi.showExplanation`'s result (the code lens over an explained range). */
interface ExplanationResult {
  text?: string;
  model?: string;
  title?: string;
  done?: boolean;
}

type EditCommand = "kimi.refactor" | "kimi.fix" | "kimi.document" | "kimi.explainAsComment";

interface KeyResult {
  stored?: boolean;
  verified?: boolean;
  cleared?: boolean;
  message?: string;
}

class KimiExtension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<LanguageClient | undefined> | undefined;
  private readonly output = vscode.window.createOutputChannel("Kimi", { log: true });
  private readonly statusItem = vscode.window.createStatusBarItem("kimi-vscode.status", vscode.StatusBarAlignment.Right, 100);
  private readonly completionItem = vscode.window.createStatusBarItem(
    "kimi-vscode.completion",
    vscode.StatusBarAlignment.Right,
    99,
  );
  private snoozeTimer: NodeJS.Timeout | undefined;
  private lastEmptyRefresh = 0;
  /** Placeholders of questions sent from here (`kimi.ask`), oldest first, until the server's `start` names them. */
  private readonly pendingAsks: string[] = [];
  private placeholderSeq = 0;
  private readonly store = new StreamStore();
  private readonly panel: KimiPanel;
  private readonly proposals: ProposalView;
  private readonly disposables: vscode.Disposable[] = [];
  private serverStatus: ServerStatus | undefined;
  private inFlight = 0;
  private statusTimer: NodeJS.Timeout | undefined;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.panel = new KimiPanel(
      this.store,
      {
        cancel: (requestId) => void this.execute("kimi.cancel", { requestId }),
        followUp: (threadId, prompt) => void this.sendAsk({ prompt, threadId }, prompt, threadId),
        ask: (prompt) => void this.sendAsk({ prompt }, prompt),
        apply: (threadId, turn, block) => void this.applyFromThread(threadId, turn, block),
        files: () => this.workspaceFiles(),
      },
      (entry) => isShownInPanel(entry),
    );
    this.statusItem.name = "Kimi";
    this.statusItem.command = "kimi-vscode.selectModel";
    this.completionItem.name = "Kimi Ghost Text";
    this.completionItem.command = "kimi-vscode.toggleCompletions";
    this.disposables.push(this.completionItem);
    this.proposals = new ProposalView(context, (command, arg, opts) => this.execute(command, arg, opts), this.output);
    this.disposables.push(this.output, this.statusItem, this.panel, this.proposals);
    this.renderStatus();
    this.statusItem.show();
    this.renderCompletionStatus();
    this.completionItem.show();
  }

  // --- server lifecycle --------------------------------------------------------------------------------------------

  /** The running client, starting it when needed; undefined (after telling the user why) when it cannot start. */
  async ensureClient(): Promise<LanguageClient | undefined> {
    if (this.client && this.client.state === State.Running) {
      return this.client;
    }
    if (!this.starting) {
      this.starting = this.start().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  private async start(): Promise<LanguageClient | undefined> {
    if (this.client) {
      // Starting or stopped after a crash: wait for it, or start it again.
      if (this.client.state === State.Starting) {
        await this.client.start().catch(() => undefined);
      } else if (this.client.state === State.Stopped) {
        await this.client.dispose().catch(() => undefined);
        this.client = undefined;
      }
      if (this.client?.state === State.Running) {
        return this.client;
      }
    }
    const setting = vscode.workspace.getConfiguration(SECTION).get<string>("server.path", "");
    const resolved = resolveServerPath(setting, {
      env: process.env,
      platform: process.platform,
      home: os.homedir(),
      workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
      isExecutable: (file) => {
        try {
          fs.accessSync(file, fs.constants.X_OK);
          return fs.statSync(file).isFile();
        } catch {
          return false;
        }
      },
    });
    if (!resolved.ok) {
      this.output.error(resolved.message);
      this.renderStatus(resolved.message);
      void vscode.window
        .showErrorMessage(`Kimi: ${resolved.message}`, "Copy Install Command", "Open Settings")
        .then((choice) => {
          if (choice === "Copy Install Command") {
            void vscode.env.clipboard.writeText(INSTALL_HINT);
          } else if (choice === "Open Settings") {
            void vscode.commands.executeCommand("workbench.action.openSettings", "kimi.server.path");
          }
        });
      return undefined;
    }

    const logLevel = vscode.workspace.getConfiguration(SECTION).get<string>("server.logLevel", "warning");
    this.output.info(`starting ${resolved.path} (from ${resolved.from}), log level ${logLevel}`);
    const serverOptions: ServerOptions = {
      command: resolved.path,
      args: ["--log-level", logLevel.toUpperCase()],
      transport: TransportKind.stdio,
      options: { env: process.env },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      // The server logs to stderr: keep its level instead of marking every line as an error.
      stdioOptions: {
        stdout: (input, channel) => lines(input, (line) => channel.info(line)),
        stderr: (input, channel) => lines(input, (line) => logServerLine(channel, line)),
      },
      // proposals: edits come as kimi/proposal to review in the file (unless kimi.previewEdits says otherwise).
      initializationOptions: () => ({ settings: kimiSettings(), stream: true, proposals: true }),
      synchronize: { configurationSection: SECTION },
      middleware: {
        // Ghost text: while snoozed, automatic requests are not sent at all (an explicit trigger still is: Suggest
        // Next Edit's held suggestion, Alt+\\). Off is the server's setting (kimi.completion.enabled).
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic && this.snoozedUntil() > Date.now()) {
            return undefined;
          }
          const result = await next(document, position, context, token);
          const items = Array.isArray(result) ? result : result?.items;
          if (!items?.length && Date.now() - this.lastEmptyRefresh > 15000) {
            // Nothing: maybe the server paused completions (a 429); the status says so.
            this.lastEmptyRefresh = Date.now();
            this.scheduleStatusRefresh(500);
          }
          return result;
        },
        executeCommand: async (command, args, next) => {
          const result = await next(command, args);
          if (STATUS_COMMANDS.has(command)) {
            this.scheduleStatusRefresh(0);
          } else if (command === "kimi.showExplanation") {
            // The code lens "show": with stream: true the server leaves showing the text to us.
            this.showExplanation(args?.[0], result);
          }
          return result;
        },
      },
    };
    const client = new LanguageClient("kimi", "Kimi", serverOptions, clientOptions);
    client.onNotification("kimi/stream", (event: StreamEvent) => this.onStream(event));
    client.onNotification("kimi/proposal", (n: ProposalNotification) => this.proposals.onNotification(n));
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) {
        this.scheduleStatusRefresh(0);
      } else if (e.newState === State.Stopped) {
        this.serverStatus = undefined;
        this.proposals.clear();
        this.renderStatus("The Kimi server is not running. Click to pick a model; run “Kimi: Restart Server” to start it.");
      }
    });
    this.client = client;
    try {
      await client.start();
    } catch (err) {
      this.output.error(`the server failed to start: ${errorMessage(err)}`);
      void vscode.window.showErrorMessage(`Kimi: the server failed to start: ${errorMessage(err)}`, "Show Log").then((c) => {
        if (c) {
          this.output.show();
        }
      });
      return undefined;
    }
    return client;
  }

  async restart(): Promise<void> {
    const old = this.client;
    this.client = undefined;
    this.markAllStopped("the server restarted");
    if (old) {
      await old.dispose(2000).catch((err) => this.output.info(`stopping: ${errorMessage(err)}`));
    }
    await this.ensureClient();
  }

  async stop(): Promise<void> {
    const old = this.client;
    this.client = undefined;
    await old?.dispose(2000).catch(() => undefined);
  }

  // --- calling the server --------------------------------------------------------------------------------------------

  /** `workspace/executeCommand` with the one-object argument the server expects. Errors are shown, then undefined. */
  async execute<T>(command: string, arg: object = {}, opts: { quiet?: boolean } = {}): Promise<T | undefined> {
    const client = await this.ensureClient();
    if (!client) {
      return undefined;
    }
    this.inFlight++;
    this.renderStatus();
    try {
      const result = (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] })) as T;
      if (STATUS_COMMANDS.has(command)) {
        this.scheduleStatusRefresh(0);
      }
      return result;
    } catch (err) {
      if (!opts.quiet) {
        this.showRequestError(command, err);
      }
      return undefined;
    } finally {
      this.inFlight--;
      this.renderStatus();
    }
  }

  private showRequestError(command: string, err: unknown): void {
    const message = errorMessage(err);
    this.output.error(`${command} failed: ${message}`);
    const keyProblem = /api key|unauthori[sz]ed|401/i.test(message);
    const actions = keyProblem ? ["Set API Key", "Show Log"] : ["Show Log"];
    void vscode.window.showErrorMessage(`Kimi: ${message}`, ...actions).then((choice) => {
      if (choice === "Set API Key") {
        void vscode.commands.executeCommand("kimi-vscode.setApiKey");
      } else if (choice === "Show Log") {
        this.output.show(true);
      }
    });
  }

  // --- streaming answers --------------------------------------------------------------------------------------------

  private onStream(event: StreamEvent): void {
    if (event?.kind === "start") {
      this.proposals.onStreamStart(event);
      // A question sent from here: its placeholder (shown since it was sent) becomes this request.
      // A follow-up's start names its thread: the placeholder of that thread; a new question's, the oldest
      // placeholder without one.
      if (event.action === "ask" && event.output === "show" && !this.store.get(event.requestId) && this.pendingAsks.length) {
        const thread = typeof event.threadId === "string" && event.threadId ? event.threadId : undefined;
        let at = this.pendingAsks.findIndex((p) => this.store.get(p)?.threadId === thread);
        at = at >= 0 ? at : 0;
        const [id] = this.pendingAsks.splice(at, 1);
        if (this.store.rename(id, event.requestId)) {
          this.panel.renamed(id, String(event.requestId));
        }
      }
    }
    const entry = this.store.apply(event);
    if (!entry) {
      return;
    }
    if (event.kind === "start" && this.shown(entry)) {
      this.panel.reveal();
    }
    if (event.kind === "done" && entry.threadId && entry.turn === undefined && this.panel.conversations.keyOf(entry) === entry.requestId) {
      entry.turn = 0; // a new conversation's first answer (its result, when it comes here, says so too)
    }
    this.panel.update(entry);
    if (event.kind === "start" || event.kind === "done") {
      this.renderStatus();
    }
    if (event.kind === "done") {
      // The panel's footer shows how a shown answer ended; an edit's end (tokens, cost) goes to the status bar.
      const message = this.shown(entry) ? undefined : endMessage(entry);
      if (message) {
        void vscode.window.setStatusBarMessage(message, 15000);
      }
      this.scheduleStatusRefresh(300); // the session's totals in the tooltip
    }
  }

  private shown(entry: Entry): boolean {
    return isShownInPanel(entry);
  }

  private markAllStopped(reason: string): void {
    for (const entry of this.store.running) {
      this.panel.update(this.store.fail(entry.requestId, reason));
    }
  }

  // --- commands ------------------------------------------------------------------------------------------------------

  register(): void {
    const reg = (id: string, fn: (...args: any[]) => unknown) =>
      this.disposables.push(vscode.commands.registerCommand(id, fn));
    reg("kimi-vscode.explain", () => this.explain());
    reg("kimi-vscode.ask", () => this.ask());
    reg("kimi-vscode.refactor", () => this.edit("kimi.refactor", true));
    reg("kimi-vscode.fix", () => this.edit("kimi.fix", false));
    reg("kimi-vscode.document", () => this.edit("kimi.document", false));
    reg("kimi-vscode.explainAsComment", () => this.edit("kimi.explainAsComment", false));
    reg("kimi-vscode.runAction", () => this.runCustomAction());
    reg("kimi-vscode.askImages", () => this.askAboutImages());
    reg("kimi-vscode.clearExplanations", () => this.clearExplanations());
    reg("kimi-vscode.selectModel", () => this.selectModel());
    reg("kimi-vscode.setApiKey", () => this.enterApiKey());
    reg("kimi.enterApiKey", (arg?: { region?: string }) => this.enterApiKey(arg?.region));
    reg("kimi-vscode.clearApiKey", () => this.clearApiKey());
    reg("kimi-vscode.showStatus", () => this.showStatus());
    reg("kimi-vscode.cancel", () => this.cancel());
    reg("kimi-vscode.restart", () => this.restart());
    reg("kimi-vscode.showLog", () => this.output.show());
    // Proposals: the code lenses pass {proposalId, hunkId?}; the keybindings pass nothing (the cursor decides).
    reg("kimi-vscode.acceptProposalChange", (t?: object) => this.proposals.acceptChange(t));
    reg("kimi-vscode.rejectProposalChange", (t?: object) => this.proposals.rejectChange(t));
    reg("kimi-vscode.acceptProposal", (t?: object) => this.proposals.acceptAll(t));
    reg("kimi-vscode.rejectProposal", (t?: object) => this.proposals.rejectAll(t));
    reg("kimi-vscode.refineProposal", (t?: object) => this.proposals.refine(t));
    reg("kimi-vscode.cancelRefine", (t?: object) => this.proposals.cancelRefine(t));
    reg("kimi-vscode.nextProposalChange", () => this.proposals.step(1));
    reg("kimi-vscode.previousProposalChange", () => this.proposals.step(-1));
    reg("kimi-vscode.showProposalDiff", (t?: object) => this.proposals.showDiff(t));
    reg("kimi-vscode.listProposals", () => this.proposals.list());
    // Ghost text and conversations.
    reg("kimi-vscode.toggleCompletions", () => this.toggleCompletions());
    reg("kimi-vscode.snoozeCompletions", () => this.setCompletions("snooze"));
    reg("kimi-vscode.suggestNextEdit", () => this.suggestNextEdit());
    reg("kimi-vscode.openConversation", () => this.openConversation());
    reg("kimi-vscode.newConversation", () => this.panel.newConversation());

    this.disposables.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("kimi.server")) {
          void this.restart();
        } else if (e.affectsConfiguration(SECTION)) {
          this.renderCompletionStatus();
          // The server pulls the new settings after didChangeConfiguration; ask for its view a moment later.
          this.serverStatus = undefined;
          this.renderStatus();
          this.scheduleStatusRefresh(400);
        }
      }),
    );
  }

  /** `{uri, range}` of the active editor's selection; an empty selection means the cursor's line. */
  private selectionArgs(requireSelection = false): { uri: string; range: object; empty: boolean } | undefined {
    const editor = vscode.window.activeTextEditor;
    if (!editor || !this.client) {
      void vscode.window.showInformationMessage("Kimi: open a file and select some code first.");
      return undefined;
    }
    const selection = editor.selection;
    if (requireSelection && selection.isEmpty) {
      return undefined;
    }
    const range = selection.isEmpty ? editor.document.lineAt(selection.active.line).range : selection;
    const c2p = this.client.code2ProtocolConverter;
    return { uri: c2p.asUri(editor.document.uri), range: c2p.asRange(range), empty: selection.isEmpty };
  }

  private async explain(): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const args = this.selectionArgs();
    if (!args) {
      return;
    }
    this.panel.reveal();
    const result = await this.execute<AnswerResult>("kimi.explain", { uri: args.uri, range: args.range });
    this.showAnswer(result, "explain");
  }

  /** "Kimi: Ask": a question, with the selection if there is one and `images` (absolute paths) if given. */
  private async ask(images?: { path: string; label: string }[]): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const editor = vscode.window.activeTextEditor;
    const hasSelection = !!editor && !editor.selection.isEmpty;
    const along = hasSelection ? " (the selection is sent along)" : "";
    const about = images?.length ? ` about ${images.map((i) => i.label).join(", ")}` : "";
    const prompt = await vscode.window.showInputBox({
      title: images?.length ? "Ask Kimi About Images" : "Ask Kimi",
      prompt: `Your question${about}${along}`,
      placeHolder: images?.length
        ? "What does this screenshot show?"
        : hasSelection ? "What does this code do when the list is empty?" : "How do I read a file line by line in Python?",
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : "Type a question"),
    });
    if (!prompt?.trim()) {
      return;
    }
    const arg: Record<string, unknown> = { prompt: prompt.trim() };
    if (images?.length) {
      // Absolute paths: the server resolves relative ones against the document's folder, and refuses anything
      // outside the workspace folders.
      arg.images = images.map((i) => i.path);
    }
    if (hasSelection) {
      const sel = this.selectionArgs(true);
      if (sel) {
        arg.uri = sel.uri;
        arg.range = sel.range;
      }
    }
    await this.sendAsk(arg, prompt.trim());
  }

  /**
   * `kimi.ask` (a new question, or a follow-up with `threadId`), shown in the panel at once as a placeholder
   * turn carrying the question; the server's `start` (or, without a stream, its result) makes it the request.
   */
  private async sendAsk(arg: Record<string, unknown>, question: string, threadId?: string): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const id = `pending-${++this.placeholderSeq}`;
    const placeholder = this.store.placeholder(id, { action: "ask", output: "show", question, threadId, done: false });
    this.pendingAsks.push(id);
    this.panel.reveal();
    this.panel.update(placeholder);
    const result = await this.execute<AnswerResult>("kimi.ask", arg);
    const waiting = this.pendingAsks.indexOf(id);
    let entryId = this.store.get(id) ? id : undefined;
    if (waiting >= 0) {
      this.pendingAsks.splice(waiting, 1); // no stream named it
      const requestId = result?.requestId;
      if (requestId !== undefined && requestId !== null && this.store.rename(id, requestId)) {
        this.panel.renamed(id, String(requestId));
        entryId = String(requestId);
      } else if (result && requestId !== undefined && requestId !== null) {
        this.store.remove(id); // the request's own entry has it all
        this.panel.removed(id);
        entryId = undefined;
      }
    }
    if (!result || typeof result !== "object") {
      if (entryId && this.store.get(entryId) && !this.store.get(entryId)!.done) {
        this.panel.update(this.store.fail(entryId, "the request failed (see the Kimi log)"));
      }
      return;
    }
    this.showAnswer(result, "ask", !!threadId);
  }

  /** An answer's code block, applied to the code its conversation started from (a proposal, reviewed in the file). */
  private async applyFromThread(threadId: string, turn: number, block: number): Promise<void> {
    // The server edits an open document: open the conversation's file first.
    const key = this.panel.conversations.shown(threadId);
    const uri = key ? this.store.get(key)?.uri : undefined;
    if (uri) {
      try {
        const document = await vscode.workspace.openTextDocument(vscode.Uri.parse(uri));
        await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn.One, preserveFocus: false });
      } catch (err) {
        this.output.warn(`applyFromThread: cannot open ${uri}: ${errorMessage(err)}`);
      }
    }
    await this.execute("kimi.applyFromThread", { threadId, turn, block });
  }

  /** Workspace paths for `#file:` suggestions in the panel, relative to their folder. */
  private async workspaceFiles(): Promise<string[]> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (!folders.length) {
      return [];
    }
    const exclude = imageExcludeGlob(vscode.workspace.getConfiguration("files").get("exclude"));
    const found = await vscode.workspace.findFiles("**/*", exclude, MAX_FILES);
    return found
      .filter((uri) => uri.scheme === "file")
      .map((uri) => vscode.workspace.asRelativePath(uri, folders.length > 1))
      .sort();
  }

  /** "Kimi: Open Conversation…": the workspace's stored conversations, newest first; the pick opens in the panel. */
  private async openConversation(): Promise<void> {
    const listed = await this.execute<{ threads?: ThreadSummary[] }>("kimi.threads", {});
    if (!listed) {
      return;
    }
    const items = threadPickItems(Array.isArray(listed.threads) ? listed.threads : [], Date.now());
    if (!items.length) {
      void vscode.window.showInformationMessage("Kimi: no conversations in this workspace yet. Explain or ask something first.");
      return;
    }
    const picked = await vscode.window.showQuickPick(items, {
      title: "Kimi: Open Conversation",
      placeHolder: "Pick a conversation to continue",
      matchOnDescription: true,
    });
    if (!picked) {
      return;
    }
    const thread = await this.execute<ThreadDetail>("kimi.thread", { threadId: picked.threadId });
    if (!thread || typeof thread !== "object" || !Array.isArray(thread.turns)) {
      return;
    }
    this.panel.reveal();
    const shown = this.panel.conversations.shown(picked.threadId);
    const entries = threadEntries({ ...thread, threadId: picked.threadId });
    if (shown) {
      // Already in the panel: bring it to the top as it is (it may have a turn running).
      const first = this.store.get(shown);
      if (first) {
        this.panel.update(first, true, true);
        return;
      }
      this.panel.conversations.forget(picked.threadId);
    }
    this.store.add(entries);
    const last = entries[entries.length - 1];
    if (last) {
      this.panel.update(last, true, true);
    }
  }

  /** The final result, for when no stream arrived (or some deltas were lost). */
  private showAnswer(result: AnswerResult | undefined, action: string, focus = false): void {
    if (!result || typeof result !== "object") {
      return;
    }
    const entry = this.store.applyResult(result, { action, title: "" });
    this.panel.reveal();
    this.panel.update(entry, false, focus);
    this.renderStatus();
  }

  /** An attached explanation shown again from its code lens: into the panel, on top. */
  private showExplanation(arg: unknown, result: unknown): void {
    const shot = result as ExplanationResult | undefined;
    if (!shot || typeof shot !== "object" || typeof shot.text !== "string" || !shot.text) {
      return;
    }
    const where = (arg && typeof arg === "object" ? arg : {}) as { uri?: unknown; id?: unknown };
    const id = typeof where.id === "string" || typeof where.id === "number" ? String(where.id) : `${Date.now()}`;
    const uri = typeof where.uri === "string" ? where.uri : undefined;
    // One panel entry per attached explanation (ids are the server's, scoped to the document).
    const entry = this.store.snapshot(`explanation-${id}-${uri ?? ""}`, shot, { action: "explain", uri });
    this.panel.reveal();
    this.panel.update(entry, true);
  }

  private async edit(command: EditCommand, askInstruction: boolean): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const args = this.selectionArgs();
    if (!args) {
      return;
    }
    const arg: Record<string, unknown> = { uri: args.uri, range: args.range };
    if (command === "kimi.explainAsComment") {
      const width = editorWidth(vscode.window.activeTextEditor?.document);
      if (width !== undefined) {
        arg.width = width;
      }
    }
    if (askInstruction) {
      const instruction = await vscode.window.showInputBox({
        title: "Kimi: Refactor Selection",
        prompt: "How should Kimi change the selected code? Leave empty for a general clean-up.",
        placeHolder: "e.g. extract a helper function, use pathlib, add type hints",
        ignoreFocusOut: true,
      });
      if (instruction === undefined) {
        return; // Escape
      }
      if (instruction.trim()) {
        arg.instruction = instruction.trim();
      }
    }
    // The edit arrives as a proposal (kimi/proposal) to review in the file, or as workspace/applyEdit with
    // kimi.previewEdits "always" / "never"; the server itself reports failures (window/showMessage and, for key
    // or model problems, a diagnostic with quick fixes), so the result needs no message here.
    await this.execute<EditResult>(command, arg);
  }

  /** "Kimi: Run Custom Action…": pick one of `kimi.actions`; `show` answers go to the panel, the others edit. */
  private async runCustomAction(): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const editor = vscode.window.activeTextEditor;
    const args = this.selectionArgs();
    if (!editor || !args) {
      return;
    }
    const actions = customActions(vscode.workspace.getConfiguration(SECTION, editor.document.uri).get("actions"));
    if (!actions.length) {
      const choice = await vscode.window.showInformationMessage(
        "Kimi: no custom actions yet. Add them to the kimi.actions setting: a title, a prompt template and where the answer goes.",
        "Open Settings",
      );
      if (choice === "Open Settings") {
        void vscode.commands.executeCommand("workbench.action.openSettings", "kimi.actions");
      }
      return;
    }
    const picked = await vscode.window.showQuickPick<ActionPickItem & vscode.QuickPickItem>(actionPickItems(actions), {
      title: "Kimi: Run Custom Action",
      placeHolder: "Pick one of your kimi.actions",
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!picked) {
      return;
    }
    const action = picked.action;
    const arg: Record<string, unknown> = { uri: args.uri, range: args.range, id: action.id };
    if (needsInstruction(action)) {
      const instruction = await vscode.window.showInputBox({
        title: `Kimi: ${picked.label}`,
        prompt: "The instruction for this action ({instruction} in its prompt)",
        ignoreFocusOut: true,
      });
      if (instruction === undefined) {
        return; // Escape
      }
      arg.instruction = instruction.trim();
    }
    if (action.output === "show") {
      this.panel.reveal();
      const result = await this.execute<AnswerResult>("kimi.runAction", arg);
      this.showAnswer(result, action.id);
    } else {
      // As refactor: the edit arrives as a proposal (or workspace/applyEdit) and the server reports failures itself.
      await this.execute<EditResult>("kimi.runAction", arg);
    }
  }

  /** "Kimi: Ask About Images…": pick workspace images, ask a question, send their paths with kimi.ask. */
  private async askAboutImages(): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (!folders.length) {
      void vscode.window.showInformationMessage("Kimi: open a folder first: images are sent from the workspace only.");
      return;
    }
    const exclude = imageExcludeGlob(vscode.workspace.getConfiguration("files").get("exclude"));
    const found = await vscode.workspace.findFiles(IMAGE_GLOB, exclude, MAX_IMAGES);
    const items = imagePickItems(
      found
        .filter((uri) => uri.scheme === "file")
        .map((uri) => ({ path: uri.fsPath, relative: vscode.workspace.asRelativePath(uri, folders.length > 1) })),
    );
    if (!items.length) {
      void vscode.window.showInformationMessage("Kimi: no PNG, JPEG, WebP or GIF images in this workspace.");
      return;
    }
    const picked = await vscode.window.showQuickPick<ImagePickItem & vscode.QuickPickItem>(items, {
      title: `Kimi: Ask About Images${found.length >= MAX_IMAGES ? ` (the first ${MAX_IMAGES} found)` : ""}`,
      placeHolder: "Pick the images to send (a model with vision is needed)",
      canPickMany: true,
      ignoreFocusOut: true,
    });
    if (!picked?.length) {
      return;
    }
    await this.ask(picked);
  }

  private async clearExplanations(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor || !(await this.ensureClient()) || !this.client) {
      void vscode.window.showInformationMessage("Kimi: open a file with explanations first.");
      return;
    }
    const uri = this.client.code2ProtocolConverter.asUri(editor.document.uri);
    const result = await this.execute<{ cleared?: number }>("kimi.clearExplanations", { uri });
    if (result) {
      const n = result.cleared ?? 0;
      void vscode.window.setStatusBarMessage(`Kimi: cleared ${n} explanation${n === 1 ? "" : "s"}`, 3000);
    }
  }

  private async selectModel(): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const quickPick = vscode.window.createQuickPick<ModelPickItem & vscode.QuickPickItem>();
    quickPick.title = "Kimi: Select Model";
    quickPick.placeholder = "Pick a model, or type any model id the API serves";
    quickPick.matchOnDescription = true;
    quickPick.busy = true;
    quickPick.show();

    const client = await this.ensureClient();
    let listed: ListModelsResult | undefined;
    if (client) {
      listed = await this.execute<ListModelsResult>("kimi.listModels", {}, { quiet: true });
    }
    if (!listed || !Array.isArray(listed.models)) {
      // No server (or it failed): offer the ids package.json knows, so the setting can still be written.
      const examples: string[] =
        this.context.extension.packageJSON?.contributes?.configuration?.properties?.["kimi.model"]?.examples ?? [];
      listed = { models: examples.map((id) => ({ id })), error: listed?.error ?? "the server did not answer" };
    }
    const current = this.serverStatus?.model ?? config.get<string>("model");
    const items = modelPickItems(listed, current).map((i) =>
      i.separator ? { ...i, kind: vscode.QuickPickItemKind.Separator } : i,
    );
    if (listed.error) {
      quickPick.title = `Kimi: Select Model (live list unavailable: ${listed.error})`;
    }
    quickPick.matchOnDetail = true;
    quickPick.items = items;
    quickPick.activeItems = items.filter((i) => i.current && !i.separator).slice(0, 1);
    quickPick.busy = false;
    quickPick.onDidChangeValue((value) => {
      const extra = customModelItem(value, items);
      quickPick.items = extra ? [...items, extra] : items;
    });
    const picked = await new Promise<ModelPickItem | undefined>((resolve) => {
      quickPick.onDidAccept(() => resolve(quickPick.selectedItems.find((i) => !i.separator && i.modelId)));
      quickPick.onDidHide(() => resolve(undefined));
    });
    quickPick.dispose();
    if (!picked) {
      return;
    }
    const target = await pickTarget(`Kimi: use ${picked.modelId} for…`);
    if (target === undefined) {
      return;
    }
    await config.update("model", picked.modelId, target);
    const inspect = vscode.workspace.getConfiguration(SECTION).inspect<string>("model");
    if (target === vscode.ConfigurationTarget.Global && inspect?.workspaceValue !== undefined) {
      void vscode.window.showWarningMessage(
        `Kimi: saved ${picked.modelId} in your user settings, but this workspace sets kimi.model to ${inspect.workspaceValue}, which wins here.`,
      );
    }
  }

  private async enterApiKey(region?: string): Promise<void> {
    if (!(await this.ensureClient())) {
      return;
    }
    const where = region ?? this.serverStatus?.region ?? vscode.workspace.getConfiguration(SECTION).get<string>("region");
    const site = where === "china" ? "platform.moonshot.cn" : "platform.moonshot.ai";
    const key = await vscode.window.showInputBox({
      title: "Kimi: Set API Key",
      prompt: `Moonshot API key${where ? ` for the ${where} region` : ""} (create one at ${site}). It is stored in the OS keychain.`,
      placeHolder: "sk-…",
      password: true,
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : "Paste your API key"),
    });
    if (!key?.trim()) {
      return;
    }
    // The server stores it in the keychain, verifies it with GET /models and says how that went.
    await this.execute<KeyResult>("kimi.setApiKey", { key: key.trim() });
  }

  private async clearApiKey(): Promise<void> {
    await this.execute<KeyResult>("kimi.clearApiKey", {});
  }

  private async showStatus(): Promise<void> {
    const status = await this.refreshStatus();
    if (!status) {
      return;
    }
    const choice = await vscode.window.showInformationMessage(
      `Kimi: ${statusLines(status).join(" · ")}`,
      "Select Model",
      status.keyPresent === false ? "Set API Key" : "Show Log",
    );
    if (choice === "Select Model") {
      void vscode.commands.executeCommand("kimi-vscode.selectModel");
    } else if (choice === "Set API Key") {
      void vscode.commands.executeCommand("kimi-vscode.setApiKey");
    } else if (choice === "Show Log") {
      this.output.show();
    }
  }

  private async cancel(): Promise<void> {
    const result = await this.execute<{ cancelled?: number }>("kimi.cancel", {});
    if (result) {
      const n = result.cancelled ?? 0;
      void vscode.window.setStatusBarMessage(`Kimi: cancelled ${n} request${n === 1 ? "" : "s"}`, 3000);
    }
  }

  // --- ghost text ----------------------------------------------------------------------------------------------------

  private snoozedUntil(): number {
    const until = this.context.globalState.get<number>(SNOOZE_KEY, 0);
    return typeof until === "number" ? until : 0;
  }

  private renderCompletionStatus(): void {
    const config = vscode.workspace.getConfiguration(SECTION);
    const inspect = config.inspect<boolean>("completion.enabled");
    const server = this.serverStatus?.completion;
    const until = this.snoozedUntil();
    const view = completionView({
      enabled: config.get<boolean>("completion.enabled", true),
      snoozedUntil: until,
      now: Date.now(),
      paused: server?.paused ?? null,
      model: server?.model ?? config.get<string>("completion.model"),
      shown: server?.shown,
      accepted: server?.accepted,
      workspaceValue: inspect?.workspaceFolderValue ?? inspect?.workspaceValue,
    });
    this.completionItem.text = view.text;
    this.completionItem.tooltip = view.tooltip;
    this.completionItem.backgroundColor = view.warn ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    // Count the snooze down, and end it, while the window is open.
    if (this.snoozeTimer) {
      clearTimeout(this.snoozeTimer);
      this.snoozeTimer = undefined;
    }
    if (view.state === "snoozed") {
      const tick = Math.min(60000, Math.max(1000, until - Date.now()));
      this.snoozeTimer = setTimeout(() => this.renderCompletionStatus(), tick);
    } else if (view.state === "paused") {
      this.snoozeTimer = setTimeout(() => this.scheduleStatusRefresh(0), 20000); // until the server resumes
    }
  }

  /** The status bar item's click: what can be done from the current state. */
  private async toggleCompletions(): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const enabled = config.get<boolean>("completion.enabled", true);
    const state = !enabled ? "off" : this.snoozedUntil() > Date.now() ? "snoozed" : "on";
    const picked = await vscode.window.showQuickPick(completionChoices(state), {
      title: `Kimi: Ghost Text (${state})`,
      placeHolder: "Inline completions as you type",
    });
    if (picked) {
      await this.setCompletions(picked.choice);
    }
  }

  /**
   * On clears a snooze and writes `kimi.completion.enabled: true` where it was false; off writes false to the
   * user settings (the server then sends nothing); snooze is this client's alone: automatic requests are not sent.
   */
  private async setCompletions(choice: "on" | "snooze" | "off" | "nextEdit" | "settings"): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    if (choice === "nextEdit") {
      return this.suggestNextEdit();
    }
    if (choice === "settings") {
      void vscode.commands.executeCommand("workbench.action.openSettings", "kimi.completion");
      return;
    }
    if (choice === "snooze") {
      await this.context.globalState.update(SNOOZE_KEY, Date.now() + SNOOZE_MINUTES * 60000);
      void vscode.commands.executeCommand("editor.action.inlineSuggest.hide");
    } else {
      await this.context.globalState.update(SNOOZE_KEY, 0);
      const want = choice === "on";
      if (config.get<boolean>("completion.enabled", true) !== want) {
        await config.update("completion.enabled", want, vscode.ConfigurationTarget.Global);
        const inspect = vscode.workspace.getConfiguration(SECTION).inspect<boolean>("completion.enabled");
        const local = inspect?.workspaceFolderValue ?? inspect?.workspaceValue;
        if (local !== undefined && local !== want) {
          void vscode.window.showWarningMessage(
            `Kimi: saved kimi.completion.enabled: ${want} in your user settings, but this workspace sets it to ${local}, which wins here.`,
          );
        }
      }
    }
    this.renderCompletionStatus();
  }

  /**
   * "Kimi: Suggest Next Edit": the server looks at the last edits and suggests the next. One change at the cursor
   * comes back as `inline`: trigger ghost text there and the server answers with it; anything else is a proposal.
   */
  private async suggestNextEdit(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const client = await this.ensureClient();
    if (!editor || !client) {
      void vscode.window.showInformationMessage("Kimi: put the cursor in a file first.");
      return;
    }
    const c2p = client.code2ProtocolConverter;
    const arg = { uri: c2p.asUri(editor.document.uri), position: c2p.asPosition(editor.selection.active) };
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "Kimi: suggesting the next edit…" },
      () => this.execute<NextEditResult>("kimi.nextEdit", arg),
    );
    if (!result) {
      return;
    }
    if (result.inline) {
      const at = result.inline.position;
      if (at && vscode.window.activeTextEditor === editor) {
        const pos = new vscode.Position(at.line, at.character);
        if (!editor.selection.active.isEqual(pos)) {
          editor.selection = new vscode.Selection(pos, pos);
        }
      }
      await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
    } else if (result.error?.message) {
      void vscode.window.setStatusBarMessage(`Kimi: ${result.error.message}`, 8000);
    } else if (result.proposed === false || result.applied === false) {
      void vscode.window.setStatusBarMessage(result.message ? `Kimi: ${result.message}` : "Kimi: no next edit to suggest", 8000);
    }
  }

  // --- status bar ----------------------------------------------------------------------------------------------------

  private scheduleStatusRefresh(delayMs: number): void {
    if (this.statusTimer) {
      clearTimeout(this.statusTimer);
    }
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      void this.refreshStatus(true);
    }, delayMs);
  }

  private async refreshStatus(quiet = false): Promise<ServerStatus | undefined> {
    if (quiet && (!this.client || this.client.state !== State.Running)) {
      return undefined;
    }
    const status = await this.execute<ServerStatus>("kimi.status", {}, { quiet });
    if (status && typeof status === "object") {
      this.serverStatus = status;
      this.renderStatus();
    }
    return status;
  }

  private renderStatus(problem?: string): void {
    const config = vscode.workspace.getConfiguration(SECTION);
    const model = this.serverStatus?.model ?? config.get<string>("model", "kimi-k2.5");
    const region = this.serverStatus?.region ?? config.get<string>("region", "international");
    const busy = this.inFlight > 0 || this.store.running.length > 0;
    const text = statusBarText(model, region);
    this.statusItem.text = busy ? text.replace("$(sparkle)", "$(loading~spin)") : text;
    const tooltip = new vscode.MarkdownString(undefined, true);
    tooltip.isTrusted = { enabledCommands: ["kimi-vscode.selectModel", "kimi-vscode.setApiKey", "kimi-vscode.showLog", "kimi-vscode.restart"] };
    if (problem) {
      tooltip.appendMarkdown(`$(warning) ${escapeMarkdown(problem)}\n\n`);
    }
    const lines = this.serverStatus ? statusLines(this.serverStatus) : [`Model: ${model}`, `Region: ${region}`];
    tooltip.appendMarkdown(lines.map(escapeMarkdown).join("  \n"));
    tooltip.appendMarkdown(
      "\n\n[Select model](command:kimi-vscode.selectModel) · [Set API key](command:kimi-vscode.setApiKey) · " +
        "[Server log](command:kimi-vscode.showLog) · [Restart](command:kimi-vscode.restart)",
    );
    this.statusItem.tooltip = tooltip;
    const balance = this.serverStatus?.balance?.amount;
    const warn = !!problem || this.serverStatus?.keyPresent === false || (typeof balance === "number" && balance <= 0);
    this.statusItem.backgroundColor = warn ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    this.renderCompletionStatus();
  }

  dispose(): void {
    if (this.statusTimer) {
      clearTimeout(this.statusTimer);
    }
    if (this.snoozeTimer) {
      clearTimeout(this.snoozeTimer);
    }
    for (const d of this.disposables) {
      d.dispose();
    }
  }
}

// --- helpers -----------------------------------------------------------------------------------------------------------

/** The `kimi` section as plain JSON, without the extension-only `kimi.server.*` keys. */
function kimiSettings(): Record<string, unknown> {
  const settings = JSON.parse(JSON.stringify(vscode.workspace.getConfiguration(SECTION))) as Record<string, unknown>;
  delete settings.server;
  return settings;
}

function lines(input: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", onLine);
}

function logServerLine(channel: vscode.LogOutputChannel, line: string): void {
  // kimi-lsp's format: "<date> <time> LEVEL logger: message". What it prints is what kimi.server.logLevel asked
  // for, so debug lines are shown as info rather than hidden behind the channel's own level.
  const level = /\b(CRITICAL|ERROR|WARNING)\b/.exec(line.slice(0, 60))?.[1];
  if (level === "CRITICAL" || level === "ERROR" || /^Traceback /.test(line)) {
    channel.error(line);
  } else if (level === "WARNING") {
    channel.warn(line);
  } else {
    channel.info(line);
  }
}

/**
 * The text width for comments: the editor's first ruler, else `editor.wordWrapColumn` when it is in effect
 * (set by the user, or wrapping at it); undefined lets the server use its default.
 */
function editorWidth(document: vscode.TextDocument | undefined): number | undefined {
  const editor = vscode.workspace.getConfiguration("editor", document);
  const column = editor.inspect<number>("wordWrapColumn");
  const setByUser = [
    column?.globalValue,
    column?.workspaceValue,
    column?.workspaceFolderValue,
    column?.globalLanguageValue,
    column?.workspaceLanguageValue,
    column?.workspaceFolderLanguageValue,
  ].some((v) => v !== undefined);
  const wrapsAtColumn = ["wordWrapColumn", "bounded"].includes(editor.get<string>("wordWrap", "off"));
  return commentWidth(editor.get("rulers"), setByUser || wrapsAtColumn ? editor.get<number>("wordWrapColumn") : undefined);
}

async function pickTarget(title: string): Promise<vscode.ConfigurationTarget | undefined> {
  if (!vscode.workspace.workspaceFolders?.length) {
    return vscode.ConfigurationTarget.Global;
  }
  const items: Array<vscode.QuickPickItem & { target: vscode.ConfigurationTarget }> = [
    { label: "Workspace", description: "this workspace only (.vscode/settings.json)", target: vscode.ConfigurationTarget.Workspace },
    { label: "User", description: "all your workspaces", target: vscode.ConfigurationTarget.Global },
  ];
  const choice = await vscode.window.showQuickPick(items, { title, placeHolder: "Where to save kimi.model" });
  return choice?.target;
}

function errorMessage(err: unknown): string {
  if (err instanceof ResponseError || err instanceof Error) {
    return err.message;
  }
  return String(err);
}

function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, "\\$&");
}

let extension: KimiExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extension = new KimiExtension(context);
  context.subscriptions.push(extension);
  extension.register();
  await extension.ensureClient();
}

export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
