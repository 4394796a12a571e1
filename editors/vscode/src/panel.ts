/** The "Kimi" webview beside the editor: answers fill in live from `kimi/stream`. */
import * as crypto from "node:crypto";
import * as vscode from "vscode";
import { renderEntry, renderPage } from "./panelHtml";
import { Entry, StreamStore } from "./stream";

export class KimiPanel implements vscode.Disposable {
  static readonly viewType = "kimi-vscode.answers";

  private panel: vscode.WebviewPanel | undefined;
  private readonly dirty = new Set<string>();
  private readonly toTop = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly store: StreamStore,
    private readonly onCancel: (requestId: string) => void,
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
    const body = this.store
      .list()
      .filter(this.isShown)
      .map((e) => renderEntry(e))
      .join("\n");
    panel.webview.html = renderPage({ cspSource: panel.webview.cspSource, nonce, body });
    panel.webview.onDidReceiveMessage(
      (msg: { type?: string; requestId?: string }) => {
        if (msg?.type === "cancel" && typeof msg.requestId === "string") {
          this.onCancel(msg.requestId);
        } else if (msg?.type === "clear") {
          this.store.clear();
          void panel.webview.postMessage({ type: "clear" });
        }
      },
      undefined,
      this.disposables,
    );
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.dirty.clear();
      this.toTop.clear();
    });
    this.panel = panel;
  }

  /**
   * Schedule a re-render of one entry (coalesced: at most one message per entry every 50 ms). `toTop` moves an
   * entry already in the panel to the top (an answer shown again), where new entries appear anyway.
   */
  update(entry: Entry, toTop = false): void {
    if (!this.panel || !this.isShown(entry)) {
      return;
    }
    this.dirty.add(entry.requestId);
    if (toTop) {
      this.toTop.add(entry.requestId);
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
    // Oldest first, so new entries are prepended in order.
    const ids = [...this.dirty];
    this.dirty.clear();
    const entries = ids.map((id) => this.store.get(id)).filter((e): e is Entry => !!e);
    for (const entry of entries) {
      const top = this.toTop.delete(entry.requestId);
      void panel.webview.postMessage({ type: "upsert", id: entry.requestId, html: renderEntry(entry), top });
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
