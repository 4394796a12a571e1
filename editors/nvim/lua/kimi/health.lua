--- `:checkhealth kimi`
local M = {}

local health = vim.health

---@param client vim.lsp.Client
---@param command string
---@return table? result, string? error
local function request(client, command)
  local resp, err = client:request_sync(
    'workspace/executeCommand',
    { command = command, arguments = { vim.empty_dict() } },
    5000
  )
  if not resp then
    return nil, err or 'no answer'
  end
  if resp.err then
    return nil, resp.err.message or vim.inspect(resp.err)
  end
  return resp.result
end

---@return string[]?
local function configured_cmd()
  local ok, cfg = pcall(function()
    return vim.lsp.config.kimi
  end)
  if ok and type(cfg) == 'table' then
    return cfg.cmd
  end
end

local function check_server()
  health.start('kimi-lsp executable')
  local cmd = configured_cmd()
  if cmd == nil then
    health.error('no `kimi` LSP config', { 'Put editors/nvim on the runtimepath, or call require("kimi").setup()' })
    return
  end
  if type(cmd) == 'function' then
    health.info('`cmd` is a function: not checked')
    return
  end
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error(('`%s` not found'):format(cmd[1]), {
      'Install the server: pipx install kimi-lsp',
      'Or point `cmd` at it: require("kimi").setup({ cmd = { "/path/to/kimi-lsp" } })',
    })
    return
  end
  health.ok(('found `%s`'):format(exe))
  local ok, res = pcall(function()
    return vim.system({ exe, '--version' }, { text = true }):wait(10000)
  end)
  if ok and res.code == 0 then
    health.ok('version: ' .. vim.trim(res.stdout ~= '' and res.stdout or res.stderr))
  else
    health.warn(('`%s --version` failed: %s'):format(cmd[1], ok and vim.trim(res.stderr or '') or tostring(res)))
  end
end

---@param client vim.lsp.Client
local function check_client(client)
  health.start(('kimi-lsp client %d (%s)'):format(client.id, client.root_dir or 'single file'))
  local status, err = request(client, 'kimi.status')
  if not status then
    health.error('kimi.status failed: ' .. tostring(err))
    return
  end
  health.ok(('server %s: model %s, region %s'):format(tostring(status.version), tostring(status.model), tostring(status.region)))
  if status.keyPresent then
    health.ok('API key present (from ' .. tostring(status.keySource) .. ')')
  else
    health.error('no API key', { 'Set MOONSHOT_API_KEY, or run :KimiSetKey' })
  end
  local session, balance, balance_ok = require('kimi.commands').account_texts(status)
  if balance_ok then
    health.ok('balance: ' .. balance)
  elseif balance then
    health.warn('balance: ' .. balance, { 'Top up the account on the Moonshot platform if it is empty' })
  end
  if session then
    health.info('this session: ' .. session)
  end
  local models, merr = request(client, 'kimi.listModels')
  if not models then
    health.error(('%s: kimi.listModels failed: %s'):format(tostring(status.baseUrl), tostring(merr)))
  elseif models.error then
    health.warn(('%s is not usable: %s'):format(tostring(status.baseUrl), tostring(models.error)), {
      'Check the key, `kimi.region` / `kimi.baseUrl` and the proxy settings',
      'Run `kimi-lsp check` in a shell for details',
    })
  else
    local live = 0
    for _, m in ipairs(models.models or {}) do
      live = live + (m.source == 'live' and 1 or 0)
    end
    health.ok(('%s answers: %d models listed (%d from the API)'):format(tostring(status.baseUrl), #(models.models or {}), live))
  end
  if type(status.offline) == 'string' and status.offline ~= '' then
    health.warn(status.offline)
  end
end

function M.check()
  health.start('Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or newer is needed (vim.lsp.config)')
  end

  check_server()

  local clients = vim.lsp.get_clients({ name = 'kimi' })
  if #clients == 0 then
    health.start('kimi-lsp (not running)')
    if vim.env.MOONSHOT_API_KEY and vim.env.MOONSHOT_API_KEY ~= '' then
      health.ok('MOONSHOT_API_KEY is set')
    else
      health.warn('MOONSHOT_API_KEY is not set (a key stored in the OS keychain is only seen by the server)', {
        'Set it, or open a file and run :KimiSetKey to store a key in the OS keychain',
      })
    end
    health.info('Open a file to start the server, or run `kimi-lsp check` in a shell to test the key and base URL')
    return
  end
  for _, client in ipairs(clients) do
    check_client(client)
  end
end

return M
