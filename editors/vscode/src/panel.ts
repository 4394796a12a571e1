/**
 * The "Kimi" webview beside the editor: answers fill in live from `kimi/stream`, grouped into conversations
 * (an answer's thread, its follow-ups in order, a box for the next one; see panelHtml.ts).
 */
import * as crypto from "node:crypto";
import * as vscode from "vscode";
import { renderConversation, renderPage } from "./panelHtml";
import { Entry, StreamStore } from "./stream";
import { ConversationIndex } from "./thread";

/** What the panel's buttons and boxes ask of the extension. */
export interface PanelActions {
  cancel(requestId: string): void;
  followUp(threadId: string, prompt: string): void;
  ask(prompt: string): void;
  apply(threadId: string, turn: number, block: number): void;
  /** Workspace paths (relative) for `#file:` suggestions. */
  files(): Promise<string[]>;
}

interface PanelMessage {
  type?: string;
  requestId?: unknown;
  threadId?: unknown;
  prompt?: unknown;
  turn?: unknown;
  block?: unknown;
}

export class KimiPanel implements vscode.Disposable {
  static readonly viewType = "kimi-vscode.answers";

  private panel: vscode.WebviewPanel | undefined;
  readonly conversations = new ConversationIndex();
  private readonly dirty = new Set<string>();
  private readonly toTop = new Set<string>();
  private focus: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly store: StreamStore,
    private readonly actions: PanelActions,
    private readonly isShown: (entry: Entry) => boolean,
  ) {}

  /** Open (or bring forward) the panel beside the editor without taking the focus. */
  reveal(): void {
    if (this.panel) {
      this.panel.reveal(vscode.ViewColumn.Beside, true);
      return;
    }
    const panel = vscode.window.createWebviewPanel(
      KimiPanel.viewType,
      "Kimi",
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
      { enableScripts: true, enableCommandUris: false, localResourceRoots: [], retainContextWhenHidden: true },
    );
    const nonce = crypto.randomBytes(16).toString("base64");
    panel.webview.html = renderPage({ cspSource: panel.webview.cspSource, nonce, body: this.renderAll() });
    panel.webview.onDidReceiveMessage((msg: PanelMessage) => this.onMessage(panel, msg), undefined, this.disposables);
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.dirty.clear();
      this.toTop.clear();
    });
    this.panel = panel;
  }

  /** Open the panel with the "New conversation" box focused. */
  newConversation(): void {
    this.reveal();
    this.panel?.reveal(vscode.ViewColumn.Beside, false);
    void this.panel?.webview.postMessage({ type: "newConversation" });
  }

  private onMessage(panel: vscode.WebviewPanel, msg: PanelMessage): void {
    const text = (v: unknown) => (typeof v === "string" ? v : undefined);
    const index = (v: unknown) => (typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : undefined);
    switch (msg?.type) {
      case "cancel":
        if (text(msg.requestId)) {
          this.actions.cancel(text(msg.requestId)!);
        }
        break;
      case "followUp": {
        const threadId = text(msg.threadId);
        const prompt = text(msg.prompt)?.trim();
        if (threadId && prompt) {
          this.actions.followUp(threadId, prompt);
        }
        break;
      }
      case "ask": {
        const prompt = text(msg.prompt)?.trim();
        if (prompt) {
          this.actions.ask(prompt);
        }
        break;
      }
      case "apply": {
        const threadId = text(msg.threadId);
        const turn = index(msg.turn);
        const block = index(msg.block);
        if (threadId && turn !== undefined && block !== undefined) {
          this.actions.apply(threadId, turn, block);
        }
        break;
      }
      case "needFiles":
        void this.actions.files().then(
          (files) => panel.webview.postMessage({ type: "files", files }),
          () => panel.webview.postMessage({ type: "files", files: [] }),
        );
        break;
      case "clear":
        this.store.clear();
        this.conversations.clear();
        void panel.webview.postMessage({ type: "clear" });
        break;
    }
  }

  private renderAll(): string {
    const entries = this.shownEntries();
    const keys: string[] = [];
    for (const e of entries) {
      const key = this.conversations.keyOf(e);
      if (!keys.includes(key)) {
        keys.push(key);
      }
    }
    // Newest conversation (by its latest answer) on top.
    return keys
      .reverse()
      .map((key) => renderConversation(key, this.conversations.members(key, entries)))
      .join("\n");
  }

  private shownEntries(): Entry[] {
    return this.store.list().reverse().filter(this.isShown); // oldest first
  }

  /** A panel entry got a new id (a follow-up's placeholder, once the server named its request). */
  renamed(from: string, to: string): void {
    void this.panel?.webview.postMessage({ type: "rename", from, to });
  }

  /** An entry that is gone (a placeholder whose request came with its own entry). */
  removed(id: string): void {
    void this.panel?.webview.postMessage({ type: "remove", id });
  }

  /**
   * Schedule a re-render of the conversation of one entry (coalesced: at most one message per conversation every
   * 50 ms). `toTop` moves a conversation already in the panel to the top (an answer shown again, a conversation
   * opened again), where new ones appear anyway; `focus` puts the cursor in its follow-up box.
   */
  update(entry: Entry, toTop = false, focus = false): void {
    if (!this.panel || !this.isShown(entry)) {
      return;
    }
    const key = this.conversations.keyOf(entry);
    if (key !== entry.requestId && this.dirty.has(entry.requestId)) {
      this.dirty.delete(entry.requestId); // it was shown on its own until it learnt its thread
    }
    this.dirty.add(key);
    if (toTop) {
      this.toTop.add(key);
    }
    if (focus) {
      this.focus = key;
    }
    if (entry.done) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), 50);
    }
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const panel = this.panel;
    if (!panel) {
      this.dirty.clear();
      this.toTop.clear();
      return;
    }
    // Oldest first, so new conversations are prepended in order.
    const keys = [...this.dirty];
    this.dirty.clear();
    const entries = this.shownEntries();
    for (const key of keys) {
      const members = this.conversations.members(key, entries);
      if (!members.length) {
        continue;
      }
      const top = this.toTop.delete(key);
      const focus = this.focus === key;
      if (focus) {
        this.focus = undefined;
      }
      void panel.webview.postMessage({ type: "upsert", id: key, html: renderConversation(key, members), top, focus });
    }
  }

  dispose(): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.panel?.dispose();
    for (const d of this.disposables) {
      d.dispose();
    }
  }
}
