/**
 * Where the kimi-lsp executable is: `kimi.server.path`, else `kimi-lsp` on PATH.
 * No vscode import: the file system checks are injected so this is unit-tested under plain Node.
 */
import * as path from "node:path";

export const SERVER_NAME = "kimi-lsp";
export const INSTALL_HINT = "pipx install kimi-lsp";

export interface ResolveEnv {
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  home: string;
  workspaceFolder?: string;
  isExecutable(file: string): boolean;
}

export type Resolution = { ok: true; path: string; from: "setting" | "PATH" } | { ok: false; message: string };

/** Expand `~` and `${workspaceFolder}` / `${userHome}` / `${env:NAME}`; make a relative path absolute. */
export function expandPath(raw: string, e: Pick<ResolveEnv, "env" | "home" | "workspaceFolder">): string {
  let p = raw.trim();
  p = p.replace(/\$\{userHome\}/g, e.home).replace(/\$\{env:([^}]+)\}/g, (_m, name: string) => e.env[name] ?? "");
  if (e.workspaceFolder) {
    p = p.replace(/\$\{workspaceFolder\}/g, e.workspaceFolder);
  }
  if (p === "~" || p.startsWith("~/") || p.startsWith("~\\")) {
    p = path.join(e.home, p.slice(1));
  }
  if (!path.isAbsolute(p) && e.workspaceFolder && (p.includes("/") || p.includes("\\"))) {
    p = path.join(e.workspaceFolder, p);
  }
  return p;
}

export function searchPath(name: string, e: Pick<ResolveEnv, "env" | "platform" | "isExecutable">): string | undefined {
  const pathVar = e.env.PATH ?? e.env.Path ?? "";
  const sep = e.platform === "win32" ? ";" : ":";
  const exts = e.platform === "win32" ? (e.env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";").concat([""]) : [""];
  for (const dir of pathVar.split(sep)) {
    if (!dir) {
      continue;
    }
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext.toLowerCase());
      if (e.isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

export function resolveServerPath(setting: string | undefined, e: ResolveEnv): Resolution {
  if (setting && setting.trim() !== "") {
    const expanded = expandPath(setting, e);
    const found = path.isAbsolute(expanded) ? (e.isExecutable(expanded) ? expanded : undefined) : searchPath(expanded, e);
    if (found) {
      return { ok: true, path: found, from: "setting" };
    }
    return {
      ok: false,
      message: `kimi.server.path is "${setting}", but ${expanded} is not an executable file. Fix the setting, or clear it to use ${SERVER_NAME} from PATH.`,
    };
  }
  const onPath = searchPath(SERVER_NAME, e);
  if (onPath) {
    return { ok: true, path: onPath, from: "PATH" };
  }
  return {
    ok: false,
    message: `The ${SERVER_NAME} language server was not found on PATH. Install it with "${INSTALL_HINT}" (or "pip install kimi-lsp"; from a checkout: "pipx install ."), or set kimi.server.path.`,
  };
}
