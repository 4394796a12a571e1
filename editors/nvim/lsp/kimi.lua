---@brief
---
--- `kimi-lsp`, a language server that brings Moonshot's Kimi models into the editor: explain,
--- refactor, fix and document code through code actions and commands.
---
--- Install the server (`pipx install .` in a checkout of the repository) and give it a
--- key: set `MOONSHOT_API_KEY`, or run `:KimiSetKey` to store one in the OS keychain.
---
--- ```lua
--- vim.lsp.config('kimi', {
---   settings = { kimi = { model = 'kimi-k2.5', region = 'china' } },
--- })
--- vim.lsp.enable('kimi')
--- ```
---
--- The config has no `filetypes`, so it attaches to every buffer that has a filetype (Neovim
--- starts configs on |FileType|; a buffer without one is not attached). To narrow it:
--- `vim.lsp.config('kimi', { filetypes = { 'python', 'lua' } })`.
---
--- Settings (the `kimi` section; every key is optional, the server's default in brackets):
--- - `model` ['kimi-k2.5'; also kimi-k2.6, kimi-k2.7-code, kimi-k2.7-code-highspeed, kimi-k3,
---   moonshot-v1-*; `:KimiModel` lists them with prices], `region` ['international'|'china'; the
---   currency is USD or CNY], `baseUrl` [region URL; for OpenAI-compatible proxies]
--- - `thinking` ['auto'|'enabled'|'disabled'], `reasoningEffort` [nil|'low'|'high'|'max';
---   kimi-k3 only], `maxTokens` [nil: model default; clamped to the window left after the
---   prompt], `temperature`, `requestTimeout` [120], `maxConcurrentRequests` [nil: learned from
---   the rate-limit replies; 1..1000]
--- - `fileContextTokens` [8000: the whole file is sent as context when it is at most this many
---   tokens; 0 = only `contextLines`], `contextLines` [20: lines around the selection otherwise]
--- - `previewEdits` ['auto'], `proxy`, `caBundle`, `customModels` [{}; each {id, contextLength,
---   vision, thinking, tools, price = {input, cachedInput, output}} with prices per million
---   tokens in the region's currency], `actions` [{}], `tools` ['auto'|'off'], `maxToolRounds`
---   [6], `toolDeny` [{}], `webSearch` [false], `maxImageBytes` [4000000],
---   `inline` [{hover, codeLens}], `completion` [{enabled, model, debounceMs, maxLines,
---   contextLines}: ghost text, which the plugin draws (lua/kimi/ghost.lua)].
--- See docs/protocol.md and server/kimi_lsp/settings.py for the full reference.
---
--- The `kimi/stream` handler below renders explanations live in a float, the `kimi/proposal` one
--- draws edits in the buffer for review (accept, reject, refine), and the
--- `workspace/codeLens/refresh` one refreshes the code lenses over explained code; all need the
--- plugin (`lua/kimi/`) on 'runtimepath'. Without it the config still works as a plain LSP client
--- (edits are then applied at once, as `workspace/applyEdit`).

---@type table<string, any>
local settings = {
  model = 'kimi-k2.5',
  region = 'international',
}

---@type vim.lsp.Config
return {
  cmd = { 'kimi-lsp' },
  root_markers = { '.git' },
  settings = { kimi = settings },
  init_options = {
    settings = settings,
    -- The client renders answers itself from `kimi/stream` notifications.
    stream = true,
    -- Edits come as `kimi/proposal`s drawn in the buffer to accept, reject or refine (:KimiAccept…),
    -- not as workspace/applyEdit; before_init turns this off when the plugin is not on 'runtimepath'.
    proposals = true,
  },
  -- The server asks for fresh code lenses when an explanation is added, dismissed or moved.
  capabilities = { workspace = { codeLens = { refreshSupport = true } } },
  handlers = {
    ['kimi/stream'] = function(err, params, ctx)
      local ok, float = pcall(require, 'kimi.float')
      if ok then
        return float.on_stream(err, params, ctx)
      end
    end,
    ['kimi/proposal'] = function(err, params, ctx)
      local ok, proposal = pcall(require, 'kimi.proposal')
      if ok then
        return proposal.on_proposal(err, params, ctx)
      end
    end,
    ['workspace/codeLens/refresh'] = function(_, _, ctx)
      local ok, codelens = pcall(require, 'kimi.codelens')
      if ok then
        codelens.on_refresh(ctx)
      end
      return vim.NIL
    end,
  },
  ---@param params lsp.InitializeParams
  ---@param config vim.lsp.ClientConfig
  before_init = function(params, config)
    -- Seed the server with the final settings (after every vim.lsp.config() override), not the
    -- defaults above, so the very first request already uses them.
    local kimi = vim.tbl_get(config, 'settings', 'kimi')
    if type(kimi) == 'table' and next(kimi) then
      params.initializationOptions = vim.tbl_extend(
        'force',
        type(params.initializationOptions) == 'table' and params.initializationOptions or {},
        { settings = kimi }
      )
    end
    -- Without lua/kimi/proposal.lua nothing would show a proposal: take edits as workspace/applyEdit.
    local opts = params.initializationOptions
    if type(opts) == 'table' and opts.proposals then
      if #vim.api.nvim_get_runtime_file('lua/kimi/proposal.lua', false) == 0 then
        opts.proposals = nil
      end
    end
  end,
}
