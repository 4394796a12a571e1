import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expandPath, resolveServerPath, ResolveEnv } from "../src/serverPath";

function env(executables: string[], extra: Partial<ResolveEnv> = {}): ResolveEnv {
  const set = new Set(executables);
  return {
    env: { PATH: "/usr/local/bin:/usr/bin:/home/u/.local/bin" },
    platform: "linux",
    home: "/home/u",
    workspaceFolder: "/work/proj",
    isExecutable: (f) => set.has(f),
    ...extra,
  };
}

describe("resolveServerPath", () => {
  it("finds kimi-lsp on PATH", () => {
    assert.deepEqual(resolveServerPath("", env(["/home/u/.local/bin/kimi-lsp"])), { ok: true, path: "/home/u/.local/bin/kimi-lsp", from: "PATH" });
  });
  it("the first PATH entry wins", () => {
    const r = resolveServerPath(undefined, env(["/usr/bin/kimi-lsp", "/home/u/.local/bin/kimi-lsp"]));
    assert.equal(r.ok && r.path, "/usr/bin/kimi-lsp");
  });
  it("prefers the setting", () => {
    const r = resolveServerPath("/opt/venv/bin/kimi-lsp", env(["/opt/venv/bin/kimi-lsp", "/usr/bin/kimi-lsp"]));
    assert.deepEqual(r, { ok: true, path: "/opt/venv/bin/kimi-lsp", from: "setting" });
  });
  it("expands ~ and ${workspaceFolder} in the setting", () => {
    assert.equal((resolveServerPath("~/.venv/bin/kimi-lsp", env(["/home/u/.venv/bin/kimi-lsp"])) as { path: string }).path, "/home/u/.venv/bin/kimi-lsp");
    assert.equal(
      (resolveServerPath("${workspaceFolder}/.venv/bin/kimi-lsp", env(["/work/proj/.venv/bin/kimi-lsp"])) as { path: string }).path,
      "/work/proj/.venv/bin/kimi-lsp",
    );
    assert.equal((resolveServerPath(".venv/bin/kimi-lsp", env(["/work/proj/.venv/bin/kimi-lsp"])) as { path: string }).path, "/work/proj/.venv/bin/kimi-lsp");
  });
  it("a bare name in the setting is looked up on PATH", () => {
    assert.equal((resolveServerPath("kimi-lsp-dev", env(["/usr/bin/kimi-lsp-dev"])) as { path: string }).path, "/usr/bin/kimi-lsp-dev");
  });
  it("a setting pointing nowhere is an error naming the path, not a silent PATH fallback", () => {
    const r = resolveServerPath("/nope/kimi-lsp", env(["/usr/bin/kimi-lsp"]));
    assert.equal(r.ok, false);
    assert.match((r as { message: string }).message, /\/nope\/kimi-lsp is not an executable/);
  });
  it("not found: the message says how to install", () => {
    const r = resolveServerPath("", env([]));
    assert.equal(r.ok, false);
    assert.match((r as { message: string }).message, /pipx install kimi-lsp/);
    assert.match((r as { message: string }).message, /pip install kimi-lsp/);
  });
  it("Windows: PATHEXT and ; separators", () => {
    const r = resolveServerPath(
      "",
      env(["C:\\py\\Scripts/kimi-lsp.exe"], { platform: "win32", env: { Path: "C:\\py\\Scripts;C:\\other", PATHEXT: ".EXE;.CMD" } }),
    );
    assert.equal(r.ok, true);
  });
});

describe("expandPath", () => {
  it("${env:NAME} and ${userHome}", () => {
    assert.equal(expandPath("${env:VENV}/bin/kimi-lsp", { env: { VENV: "/v" }, home: "/h" }), "/v/bin/kimi-lsp");
    assert.equal(expandPath("${userHome}/x", { env: {}, home: "/h" }), "/h/x");
  });
});
