// The manifest and the code agree: every command the code registers is contributed (and vice versa), and none
// clashes with the server's `kimi.*` commands, which vscode-languageclient registers itself.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";

const root = path.resolve(__dirname, "..", "..", "..");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const source = fs.readFileSync(path.join(root, "src", "extension.ts"), "utf8");
const registered = [...source.matchAll(/reg\("([^"]+)"/g)].map((m) => m[1]);
const contributed: string[] = manifest.contributes.commands.map((c: { command: string }) => c.command);
const CLIENT_SIDE_SERVER_IDS = ["kimi.enterApiKey"]; // docs/protocol.md: implemented by the client

describe("package.json commands", () => {
  it("the code registers commands", () => assert.ok(registered.length >= 10, String(registered)));
  it("every contributed command is registered", () => {
    for (const id of contributed) {
      assert.ok(registered.includes(id), `${id} is contributed but never registered`);
    }
  });
  it("every registered command is contributed (except client-side protocol commands)", () => {
    for (const id of registered) {
      assert.ok(contributed.includes(id) || CLIENT_SIDE_SERVER_IDS.includes(id), `${id} is registered but not in package.json`);
    }
  });
  it("own ids use the kimi-vscode. prefix, never the server's kimi.", () => {
    for (const id of registered.filter((i) => !CLIENT_SIDE_SERVER_IDS.includes(i))) {
      assert.match(id, /^kimi-vscode\./);
    }
  });
  it("the palette titles the e2e test and the README use", () => {
    const titles = Object.fromEntries(
      manifest.contributes.commands.map((c: { command: string; category?: string; title: string }) => [c.command, `${c.category}: ${c.title}`]),
    );
    assert.equal(titles["kimi-vscode.explainAsComment"], "Kimi: Explain as Comment");
    assert.equal(titles["kimi-vscode.runAction"], "Kimi: Run Custom Action\u2026");
    assert.equal(titles["kimi-vscode.askImages"], "Kimi: Ask About Images\u2026");
    assert.equal(titles["kimi-vscode.clearExplanations"], "Kimi: Clear Explanations");
  });
  it("the Kimi editor submenu offers the selection commands", () => {
    const submenu = (manifest.contributes.menus["kimi-vscode.editorContext"] as Array<{ command: string }>).map((i) => i.command);
    for (const id of ["kimi-vscode.explain", "kimi-vscode.explainAsComment", "kimi-vscode.runAction", "kimi-vscode.askImages"]) {
      assert.ok(submenu.includes(id), id);
    }
  });
  it("menus only reference contributed commands", () => {
    for (const [menu, items] of Object.entries(manifest.contributes.menus as Record<string, Array<{ command?: string }>>)) {
      for (const item of items) {
        if (item.command) {
          assert.ok(contributed.includes(item.command), `${menu} → ${item.command}`);
        }
      }
    }
  });
});
