/**
 * Shows the server's proposals (docs/protocol.md, "Proposals") in the editor of their document and forwards the
 * user's verdicts: removed lines marked red (gutter and overview ruler too) with the new code as ghost text
 * beside them, a hover with the hunk as a diff, code lenses (Accept / Reject / Refine… / Diff), a side-by-side
 * diff of the document against the proposal opened beside the file, a `kimi.hasProposal` context key for the
 * keybindings, and a status bar count. The server applies accepts itself and tracks staleness; this only shows.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import {
  documentHunks,
  firstLine,
  Hunk,
  hunkAt,
  hunkHoverMarkdown,
  KEYS,
  paintProposal,
  Proposal,
  ProposalNotification,
  proposalAt,
  proposalLenses,
  ProposalPickItem,
  proposalPickItems,
  proposalStatusText,
  ProposalStore,
  sortedHunks,
  stepHunk,
  applyHunks,
} from "./proposals";
import type { StreamEvent } from "./stream";

export const PROPOSAL_SCHEME = "kimi-proposal";
const CONTEXT_KEY = "kimi.hasProposal";

type Execute = <T>(command: string, arg?: object, opts?: { quiet?: boolean }) => Promise<T | undefined>;

interface Target {
  proposalId?: string;
  hunkId?: string;
}

interface AcceptResult {
  applied?: boolean;
  hunks?: string[];
  remaining?: string[];
  message?: string;
}

export class ProposalView implements vscode.Disposable, vscode.CodeLensProvider, vscode.TextDocumentContentProvider {
  readonly store = new ProposalStore();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly lensesChanged = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.lensesChanged.event;
  private readonly contentChanged = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.contentChanged.event;
  private readonly statusItem = vscode.window.createStatusBarItem("kimi-vscode.proposals", vscode.StatusBarAlignment.Right, 99);
  private readonly removedLine: vscode.TextEditorDecorationType;
  private readonly ghost: vscode.TextEditorDecorationType;
  private readonly inserted: vscode.TextEditorDecorationType;
  private readonly resyncTimers = new Map<string, NodeJS.Timeout>();
  /** The request id of each running refinement (from its kimi/stream start), for Cancel. */
  private readonly refineRequests = new Map<string, string | number>();
  private hasProposalKey: boolean | undefined;

  constructor(
    context: vscode.ExtensionContext,
    private readonly execute: Execute,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.removedLine = vscode.window.createTextEditorDecorationType({
      isWholeLine: true,
      backgroundColor: new vscode.ThemeColor("diffEditor.removedLineBackground"),
      overviewRulerColor: new vscode.ThemeColor("editorOverviewRuler.deletedForeground"),
      overviewRulerLane: vscode.OverviewRulerLane.Left,
      gutterIconPath: vscode.Uri.joinPath(context.extensionUri, "images", "proposal-removed.svg"),
      gutterIconSize: "contain",
    });
    const ghostStyle: vscode.ThemableDecorationAttachmentRenderOptions = {
      margin: "0 0 0 2ch",
      color: new vscode.ThemeColor("editorGhostText.foreground"),
      backgroundColor: new vscode.ThemeColor("diffEditor.insertedTextBackground"),
      fontStyle: "italic",
    };
    this.ghost = vscode.window.createTextEditorDecorationType({ after: ghostStyle, rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed });
    this.inserted = vscode.window.createTextEditorDecorationType({
      after: ghostStyle,
      overviewRulerColor: new vscode.ThemeColor("editorOverviewRuler.addedForeground"),
      overviewRulerLane: vscode.OverviewRulerLane.Left,
      gutterIconPath: vscode.Uri.joinPath(context.extensionUri, "images", "proposal-added.svg"),
      gutterIconSize: "contain",
    });
    this.statusItem.name = "Kimi Proposals";
    this.statusItem.command = "kimi-vscode.listProposals";
    this.disposables.push(
      this.removedLine,
      this.ghost,
      this.inserted,
      this.statusItem,
      this.lensesChanged,
      this.contentChanged,
      vscode.languages.registerCodeLensProvider([{ scheme: "file" }, { scheme: "untitled" }], this),
      vscode.workspace.registerTextDocumentContentProvider(PROPOSAL_SCHEME, this),
      vscode.window.onDidChangeVisibleTextEditors(() => this.renderAll()),
      vscode.window.onDidChangeActiveTextEditor(() => this.updateContext()),
      vscode.window.tabGroups.onDidChangeTabs(() => this.lensesChanged.fire()), // "Diff" shows while the diff is closed
      vscode.window.onDidChangeTextEditorSelection(() => this.updateContext()),
      vscode.workspace.onDidChangeTextDocument((e) => this.documentChanged(e)),
    );
    this.renderStatus();
  }

  // --- from the server ---------------------------------------------------------------------------------------------

  onNotification(raw: ProposalNotification): void {
    if (!raw || typeof raw.uri !== "string") {
      return;
    }
    const n = { ...raw, uri: normalize(raw.uri) };
    const change = this.store.apply(n);
    this.log.debug(`kimi/proposal ${n.proposalId} ${n.state} (${n.hunks?.length ?? 0} hunks)`);
    switch (change.kind) {
      case "shown": {
        const doc = this.document(n.uri);
        if (doc && typeof n.version === "number" && n.version !== doc.version) {
          this.scheduleResync(n.uri, 50); // typed meanwhile: the server's ranges are for an older text
        }
        if (change.proposal.state === "ready") {
          this.refineRequests.delete(change.proposal.id);
        }
        this.changed(n.uri, change.proposal.id);
        if (change.isNew) {
          void this.revealNew(change.proposal);
        }
        break;
      }
      case "stale":
        this.ended(n.uri, change.id);
        void this.showStale(change.id, change.uri, change.title, change.message);
        break;
      case "ended":
        this.ended(n.uri, change.id);
        break;
    }
  }

  /** A refinement's stream begins: remember its request id so Cancel stops just that. */
  onStreamStart(event: StreamEvent): void {
    if (event.kind !== "start" || !event.uri) {
      return;
    }
    const uri = normalize(event.uri);
    for (const p of this.store.of(uri)) {
      if (p.state === "refining" && !this.refineRequests.has(p.id)) {
        this.refineRequests.set(p.id, event.requestId);
      }
    }
  }

  /** The server stopped: its proposals are gone with it. */
  clear(): void {
    const gone = this.store.clear();
    this.refineRequests.clear();
    for (const p of gone) {
      void this.closeDiff(p.id);
    }
    this.renderAll();
  }

  // --- rendering ---------------------------------------------------------------------------------------------------

  private changed(uri: string, id?: string): void {
    this.render(uri);
    this.lensesChanged.fire();
    if (id) {
      this.fireContent(id);
    }
    this.renderStatus();
    this.updateContext();
  }

  private ended(uri: string, id: string): void {
    this.refineRequests.delete(id);
    void this.closeDiff(id);
    this.changed(uri);
  }

  private renderAll(): void {
    const uris = new Set(vscode.window.visibleTextEditors.map((e) => e.document.uri.toString()));
    for (const uri of uris) {
      this.render(uri);
    }
    this.lensesChanged.fire();
    this.renderStatus();
    this.updateContext();
  }

  private render(uri: string): void {
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document.uri.toString() !== uri) {
        continue;
      }
      const removed: vscode.DecorationOptions[] = [];
      const ghosts: vscode.DecorationOptions[] = [];
      const inserts: vscode.DecorationOptions[] = [];
      const lineCount = editor.document.lineCount;
      for (const p of this.store.of(uri)) {
        const byId = new Map(p.hunks.map((h) => [h.id, h]));
        for (const paint of paintProposal(p, lineCount)) {
          const hunk = byId.get(paint.hunkId) as Hunk;
          const hover = new vscode.MarkdownString(hunkHoverMarkdown(p, hunk));
          for (const line of paint.removed) {
            if (line < lineCount) {
              removed.push({ range: editor.document.lineAt(line).range, hoverMessage: hover });
            }
          }
          for (const g of paint.ghosts) {
            if (g.line >= lineCount) {
              continue;
            }
            const lineRange = editor.document.lineAt(g.line).range;
            const at = g.placement === "after" ? lineRange.end : lineRange.start;
            const option: vscode.DecorationOptions = {
              range: new vscode.Range(at, at),
              hoverMessage: hover,
              renderOptions: g.placement === "after" ? { after: { contentText: g.text } } : { before: { contentText: g.text } },
            };
            (g.kind === "insert" ? inserts : ghosts).push(option);
          }
        }
      }
      editor.setDecorations(this.removedLine, removed);
      editor.setDecorations(this.ghost, ghosts);
      editor.setDecorations(this.inserted, inserts);
    }
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    const lenses: vscode.CodeLens[] = [];
    for (const p of this.store.of(document.uri.toString())) {
      for (const item of proposalLenses(p, { diffOpen: this.diffTabs(p.id).length > 0 })) {
        const line = Math.min(item.line, Math.max(0, document.lineCount - 1));
        lenses.push(
          new vscode.CodeLens(new vscode.Range(line, 0, line, 0), {
            title: item.title,
            command: item.command,
            arguments: item.args ? [item.args] : [],
            tooltip: item.tooltip,
          }),
        );
      }
    }
    return lenses;
  }

  /** The two sides of the diff view: the document as it is (`current`) and with the proposal applied. */
  provideTextDocumentContent(uri: vscode.Uri): string {
    const q = new URLSearchParams(uri.query);
    const p = this.store.get(q.get("id") ?? "");
    const source = q.get("uri");
    const doc = source ? this.document(source) : undefined;
    const text = doc?.getText() ?? "";
    if (!p || q.get("side") !== "proposed") {
      return text;
    }
    return applyHunks(text, p.hunks);
  }

  private fireContent(id: string): void {
    for (const tab of this.diffTabs(id)) {
      const input = tab.input as vscode.TabInputTextDiff;
      this.contentChanged.fire(input.original);
      this.contentChanged.fire(input.modified);
    }
  }

  private renderStatus(): void {
    const live = this.store.all;
    const text = proposalStatusText(live);
    if (!text) {
      this.statusItem.hide();
      return;
    }
    this.statusItem.text = text;
    const tip = new vscode.MarkdownString(undefined, true);
    tip.appendMarkdown(`Kimi proposals waiting for review: ${live.length}\n\n`);
    tip.appendMarkdown(
      `Accept a change ${KEYS.acceptChange} · reject ${KEYS.rejectChange} · all ${KEYS.acceptAll} / ${KEYS.rejectAll} · next ${KEYS.next}\n\nClick to list them.`,
    );
    this.statusItem.tooltip = tip;
    this.statusItem.show();
  }

  private updateContext(): void {
    const editor = vscode.window.activeTextEditor;
    const has = !!editor && this.store.of(editor.document.uri.toString()).length > 0;
    if (has !== this.hasProposalKey) {
      this.hasProposalKey = has;
      void vscode.commands.executeCommand("setContext", CONTEXT_KEY, has);
    }
  }

  // --- following the document --------------------------------------------------------------------------------------

  private documentChanged(e: vscode.TextDocumentChangeEvent): void {
    if (e.document.uri.scheme === PROPOSAL_SCHEME || !e.contentChanges.length) {
      return;
    }
    const uri = e.document.uri.toString();
    const live = this.store.of(uri);
    if (!live.length) {
      return;
    }
    const touched = this.store.documentChanged(
      uri,
      e.contentChanges.map((c) => ({
        range: { start: c.range.start, end: c.range.end },
        text: c.text,
      })),
    );
    this.render(uri);
    this.lensesChanged.fire();
    for (const p of live) {
      this.fireContent(p.id);
    }
    // The server moves hunks the same way; ask for its view after the typing settles (at once when a hunk was hit).
    this.scheduleResync(uri, touched ? 300 : 1000);
  }

  private scheduleResync(uri: string, delayMs: number): void {
    const old = this.resyncTimers.get(uri);
    if (old) {
      clearTimeout(old);
    }
    this.resyncTimers.set(
      uri,
      setTimeout(() => {
        this.resyncTimers.delete(uri);
        void this.resync(uri);
      }, delayMs),
    );
  }

  private async resync(uri: string): Promise<void> {
    const doc = this.document(uri);
    const listed = await this.execute<{ proposals?: ProposalNotification[] }>(
      "kimi.listProposals",
      { uri: doc ? doc.uri.toString() : uri },
      { quiet: true },
    );
    if (!listed || !Array.isArray(listed.proposals)) {
      return;
    }
    const current = this.document(uri);
    const fresh = listed.proposals
      .map((n) => ({ ...n, uri: normalize(n.uri) }))
      .filter((n) => !current || typeof n.version !== "number" || n.version === current.version);
    if (current && fresh.length < listed.proposals.length) {
      return; // typing went on meanwhile: the next resync catches up
    }
    for (const change of this.store.sync(uri, fresh)) {
      if (change.kind === "stale") {
        this.ended(uri, change.id);
        void this.showStale(change.id, change.uri, change.title, change.message);
      } else if (change.kind === "ended") {
        this.ended(uri, change.id);
      } else if (change.kind === "shown") {
        this.fireContent(change.proposal.id);
      }
    }
    this.changed(uri);
  }

  // --- user actions ----------------------------------------------------------------------------------------------

  /** Accept the hunk named by a lens, or the one under the cursor (else move to the next and say so). */
  async acceptChange(target?: Target): Promise<void> {
    const picked = this.pickHunk(target, "accept");
    if (!picked) {
      return;
    }
    const result = await this.execute<AcceptResult>("kimi.acceptProposal", { proposalId: picked.proposalId, hunks: [picked.hunkId] });
    this.afterAccept(result, picked.proposalId);
  }

  async rejectChange(target?: Target): Promise<void> {
    const picked = this.pickHunk(target, "reject");
    if (!picked) {
      return;
    }
    await this.execute("kimi.rejectProposal", { proposalId: picked.proposalId, hunks: [picked.hunkId] });
  }

  async acceptAll(target?: Target): Promise<void> {
    const p = this.pickProposal(target, "accept");
    if (p) {
      const result = await this.execute<AcceptResult>("kimi.acceptProposal", { proposalId: p.id });
      this.afterAccept(result, p.id);
    }
  }

  async rejectAll(target?: Target): Promise<void> {
    const p = this.pickProposal(target, "reject");
    if (p) {
      await this.execute("kimi.rejectProposal", { proposalId: p.id });
    }
  }

  private afterAccept(result: AcceptResult | undefined, id: string): void {
    if (result?.applied) {
      const n = result.hunks?.length ?? 0;
      void vscode.window.setStatusBarMessage(`Kimi: applied ${n} change${n === 1 ? "" : "s"} (undo with Ctrl+Z)`, 4000);
      // What is left of the proposal, if anything: put the cursor on it.
      const p = this.store.get(id);
      if (p && result.remaining?.length) {
        this.scheduleResync(p.uri, 100);
      }
    }
    // A refusal (stale, changed, declined) is reported by the server with window/showMessage.
  }

  async refine(target?: Target): Promise<void> {
    const p = this.pickProposal(target, "refine");
    if (!p) {
      return;
    }
    if (p.state === "refining") {
      void vscode.window.showInformationMessage(`Kimi: ${p.title} is being refined already.`);
      return;
    }
    const instruction = await vscode.window.showInputBox({
      title: `Kimi: Refine ${p.title.replace(/^Kimi:\s*/, "")}`,
      prompt: "How should Kimi change its proposal? It sees your request, the code it proposed and this.",
      placeHolder: "e.g. keep the old name, use a list comprehension, add type hints",
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : "Say what to change"),
    });
    if (!instruction?.trim()) {
      return;
    }
    if (!this.store.get(p.id)) {
      void vscode.window.showWarningMessage("Kimi: that proposal ended meanwhile; nothing was refined.");
      return;
    }
    this.store.markRefining(p.id, instruction.trim());
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `Kimi: refining ${p.title.replace(/^Kimi:\s*/, "")}` },
      () => this.execute("kimi.refineProposal", { proposalId: p.id, instruction: instruction.trim() }),
    );
  }

  async cancelRefine(target?: Target): Promise<void> {
    const id = target?.proposalId;
    const requestId = id ? this.refineRequests.get(id) : undefined;
    if (requestId === undefined) {
      void vscode.window.showInformationMessage("Kimi: the refinement has not started streaming yet; try again in a moment.");
      return;
    }
    await this.execute("kimi.cancel", { requestId });
  }

  /** Move the cursor to the next (or previous) change of the active editor's proposals. */
  step(direction: 1 | -1): void {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      return;
    }
    const hunks = documentHunks(this.store.of(editor.document.uri.toString()));
    const next = stepHunk(hunks, editor.selection.active.line, direction);
    if (!next) {
      void vscode.window.setStatusBarMessage("Kimi: no proposal in this file", 3000);
      return;
    }
    this.moveTo(editor, next.line);
    const i = hunks.indexOf(next) + 1;
    void vscode.window.setStatusBarMessage(`Kimi: change ${i} of ${hunks.length}`, 3000);
  }

  async showDiff(target?: Target): Promise<void> {
    const p = this.pickProposal(target, "show");
    if (p) {
      await this.openDiff(p, false);
    }
  }

  /** The status bar's list: every live proposal; picking one opens its file at its first change. */
  async list(): Promise<void> {
    const items = proposalPickItems(this.store.all, (uri) => {
      const parsed = vscode.Uri.parse(uri);
      return parsed.scheme === "file" ? vscode.workspace.asRelativePath(parsed) : parsed.path;
    });
    if (!items.length) {
      void vscode.window.showInformationMessage("Kimi: no proposals waiting for review.");
      return;
    }
    const picked = await vscode.window.showQuickPick<ProposalPickItem & vscode.QuickPickItem>(items, {
      title: "Kimi: Proposals",
      placeHolder: "Pick a proposal to review",
      matchOnDescription: true,
    });
    const p = picked && this.store.get(picked.proposalId);
    if (!p) {
      return;
    }
    const editor = await vscode.window.showTextDocument(vscode.Uri.parse(p.uri));
    this.moveTo(editor, sortedHunks(p)[0]?.range.start.line ?? firstLine(p));
    await this.openDiff(p, true);
  }

  // --- helpers ------------------------------------------------------------------------------------------------------

  private pickHunk(target: Target | undefined, verb: string): { proposalId: string; hunkId: string } | undefined {
    if (target?.proposalId && target.hunkId) {
      return { proposalId: target.proposalId, hunkId: target.hunkId };
    }
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      return undefined;
    }
    const proposals = this.store.of(editor.document.uri.toString());
    const hunks = documentHunks(proposals);
    if (!hunks.length) {
      const refining = proposals.some((p) => p.state === "refining");
      void vscode.window.setStatusBarMessage(refining ? "Kimi: the proposal is being refined" : "Kimi: no proposal in this file", 3000);
      return undefined;
    }
    const line = editor.selection.active.line;
    const at = hunkAt(hunks, line);
    if (at) {
      return at;
    }
    // Not on a change: never act on one the user has not looked at; go there instead.
    const next = stepHunk(hunks, line, 1) as (typeof hunks)[number];
    this.moveTo(editor, next.line);
    void vscode.window.setStatusBarMessage(`Kimi: moved to change ${hunks.indexOf(next) + 1} of ${hunks.length}; press again to ${verb} it`, 4000);
    return undefined;
  }

  private pickProposal(target: Target | undefined, verb: string): Proposal | undefined {
    if (target?.proposalId) {
      const p = this.store.get(target.proposalId);
      if (!p) {
        void vscode.window.showWarningMessage("Kimi: that proposal is no longer open (accepted, rejected or replaced).");
      }
      return p;
    }
    const editor = vscode.window.activeTextEditor;
    const proposals = editor ? this.store.of(editor.document.uri.toString()) : [];
    const p = editor ? proposalAt(proposals, editor.selection.active.line) : undefined;
    if (!p) {
      void vscode.window.setStatusBarMessage(
        proposals.length ? `Kimi: put the cursor in the proposal to ${verb} (${KEYS.next} goes to the next change)` : "Kimi: no proposal in this file",
        4000,
      );
    }
    return p;
  }

  private moveTo(editor: vscode.TextEditor, line: number): void {
    const pos = new vscode.Position(Math.min(line, Math.max(0, editor.document.lineCount - 1)), 0);
    editor.selection = new vscode.Selection(pos, pos);
    editor.revealRange(new vscode.Range(pos, pos), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  /** A new proposal: bring its first change into view and open the diff beside the file. */
  private async revealNew(p: Proposal): Promise<void> {
    const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === p.uri);
    const first = sortedHunks(p)[0];
    if (editor && first) {
      // The request's selection still up: put the cursor on the first change instead (the selection's highlight
      // would hide the marks, and Ctrl+Alt+Y then accepts what the cursor is on).
      const start = new vscode.Position(first.range.start.line, 0);
      if (!editor.selection.isEmpty && editor.selection.contains(start)) {
        editor.selection = new vscode.Selection(start, start);
      }
      editor.revealRange(
        new vscode.Range(first.range.start.line, 0, first.range.start.line, 0),
        vscode.TextEditorRevealType.InCenterIfOutsideViewport,
      );
    }
    if (editor) {
      await this.openDiff(p, true);
    }
  }

  private diffUris(p: Proposal): { current: vscode.Uri; proposed: vscode.Uri } {
    const source = vscode.Uri.parse(p.uri);
    const make = (side: string) =>
      source.with({ scheme: PROPOSAL_SCHEME, query: new URLSearchParams({ id: p.id, side, uri: p.uri }).toString(), fragment: "" });
    return { current: make("current"), proposed: make("proposed") };
  }

  private async openDiff(p: Proposal, preserveFocus: boolean): Promise<void> {
    const { current, proposed } = this.diffUris(p);
    const name = path.posix.basename(vscode.Uri.parse(p.uri).path) || "untitled";
    const title = `${name} ↔ ${p.title} (proposal)`;
    try {
      await vscode.commands.executeCommand("vscode.diff", current, proposed, title, {
        viewColumn: vscode.ViewColumn.Beside,
        preserveFocus,
        preview: true,
      });
    } catch (err) {
      this.log.warn(`could not open the proposal's diff: ${String(err)}`);
    }
  }

  private diffTabs(id: string): vscode.Tab[] {
    return vscode.window.tabGroups.all.flatMap((g) =>
      g.tabs.filter(
        (t) =>
          t.input instanceof vscode.TabInputTextDiff &&
          t.input.modified.scheme === PROPOSAL_SCHEME &&
          new URLSearchParams(t.input.modified.query).get("id") === id,
      ),
    );
  }

  private async closeDiff(id: string): Promise<void> {
    const tabs = this.diffTabs(id);
    if (tabs.length) {
      await vscode.window.tabGroups.close(tabs, true).then(undefined, () => undefined);
    }
  }

  private async showStale(id: string, uri: string, title: string, message: string): Promise<void> {
    const doc = this.document(uri);
    const file = path.posix.basename(vscode.Uri.parse(uri).path);
    if (!doc) {
      void vscode.window.setStatusBarMessage(`Kimi: the proposal for ${file} was dropped: ${message}`, 6000);
      return;
    }
    const choice = await vscode.window.showWarningMessage(
      `${title} (${file}): ${message.replace(/\.$/, "")}. Run the action again for a new proposal.`,
      "Reject",
      "Dismiss",
    );
    if (choice === "Reject") {
      await this.execute("kimi.rejectProposal", { proposalId: id }, { quiet: true });
    }
  }

  private document(uri: string): vscode.TextDocument | undefined {
    return vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri);
  }

  dispose(): void {
    for (const t of this.resyncTimers.values()) {
      clearTimeout(t);
    }
    for (const d of this.disposables) {
      d.dispose();
    }
  }
}

/** The server echoes the uri the client sent (Uri.toString()); parse and print it the same way to compare. */
function normalize(uri: string): string {
  try {
    return vscode.Uri.parse(uri).toString();
  } catch {
    return uri;
  }
}
