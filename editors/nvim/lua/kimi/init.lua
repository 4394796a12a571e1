--- kimi.nvim: Neovim client of kimi-lsp.
---
--- ```lua
--- require('kimi').setup({
---   model = 'kimi-k2.5',        -- any `kimi.*` server setting, camelCase
---   region = 'china',
---   -- plugin options, not sent to the server:
---   cmd = { 'kimi-lsp' },       -- how to start the server
---   float = { max_width = 88 }, -- see lua/kimi/float.lua
---   codelens = true,            -- the code lenses above explained code (lua/kimi/codelens.lua)
---   keymaps = { accept = 'ga' }, -- the proposal keys (lua/kimi/proposal.lua); false: none
---   completion = { accept = '<M-l>', debounceMs = 120 }, -- ghost text (lua/kimi/ghost.lua): the
---                               -- snake_case keys are the plugin's, the others server settings;
---                               -- false turns it off (and `kimi.completion.enabled`)
---   lsp = { filetypes = { 'python', 'lua' } }, -- any other vim.lsp.Config field
--- })
--- ```
---
--- `setup()` merges into `vim.lsp.config('kimi')` (whose defaults are lsp/kimi.lua) and enables it.
--- Calling it is optional: `vim.lsp.config('kimi', {...})` + `vim.lsp.enable('kimi')` is the same.
local M = {}

--- Keys of `setup()` that configure the plugin; every other key is a server setting.
local PLUGIN_KEYS = { cmd = true, float = true, lsp = true, codelens = true, keymaps = true }

---@class kimi.Options: table<string, any>
---@field cmd? string[]|fun(dispatchers: vim.lsp.rpc.Dispatchers): vim.lsp.rpc.PublicClient
---@field float? table
---@field codelens? boolean fetch and show the kimi code lenses (default true)
---@field keymaps? table<string, string|false>|false buffer-local keys while a proposal is shown
---@field lsp? vim.lsp.Config
---@field completion? table|false ghost text: false for none; keys accept, accept_word, dismiss, trigger
---  (the plugin's) and the server's `kimi.completion` settings (enabled, model, debounceMs, …)

--- The plugin's keys of `completion` (the ghost text keys); the others are server settings.
local GHOST_KEYS = { accept = true, accept_word = true, dismiss = true, trigger = true }

--- `completion` split into the plugin's part and the server's.
---@param completion table|boolean|nil
---@return table? keys, table? settings
local function split_completion(completion)
  if completion == false then
    return nil, { enabled = false }
  elseif completion == true then
    return nil, { enabled = true }
  elseif type(completion) ~= 'table' then
    return nil, nil
  end
  local keys, settings = {}, {}
  for k, v in pairs(completion) do
    if GHOST_KEYS[k] then
      keys[k] = v
    else
      settings[k] = v
    end
  end
  return next(keys) and keys or nil, next(settings) and settings or nil
end

--- Split `setup()` options into the server's `kimi` settings and the client config.
---@param opts kimi.Options
---@return vim.lsp.Config
function M.config(opts)
  local settings = {}
  for k, v in pairs(opts) do
    if k == 'completion' then
      local _, server = split_completion(v)
      settings.completion = server
    elseif not PLUGIN_KEYS[k] then
      if type(k) == 'string' and k:find('_') then
        vim.notify(
          ('kimi: setting %q is snake_case; the server expects camelCase (e.g. baseUrl)'):format(k),
          vim.log.levels.WARN
        )
      end
      settings[k] = v
    end
  end
  local cfg = vim.deepcopy(opts.lsp or {})
  if opts.cmd then
    cfg.cmd = opts.cmd
  end
  if next(settings) then
    cfg.settings = vim.tbl_deep_extend('force', cfg.settings or {}, { kimi = settings })
    cfg.init_options = vim.tbl_deep_extend('force', cfg.init_options or {}, { settings = settings })
  end
  return cfg
end

--- Configure and enable the `kimi` language server.
---@param opts? kimi.Options
function M.setup(opts)
  opts = opts or {}
  vim.validate('opts', opts, 'table')
  vim.validate('opts.codelens', opts.codelens, 'boolean', true)
  vim.validate('opts.keymaps', opts.keymaps, { 'table', 'boolean' }, true)
  vim.validate('opts.completion', opts.completion, { 'table', 'boolean' }, true)
  if opts.float then
    local float = require('kimi.float')
    float.options = vim.tbl_extend('force', float.options, opts.float)
  end
  if opts.codelens ~= nil then
    require('kimi.codelens').enable(opts.codelens)
  end
  if opts.keymaps ~= nil then
    require('kimi.proposal').set_keymaps(opts.keymaps)
  end
  if opts.completion ~= nil then
    local keys = split_completion(opts.completion)
    local enabled = opts.completion ~= false and not (type(opts.completion) == 'table' and opts.completion.enabled == false)
    require('kimi.ghost').configure(enabled, keys)
  end
  vim.lsp.config('kimi', M.config(opts))
  vim.lsp.enable('kimi')
end

return M
