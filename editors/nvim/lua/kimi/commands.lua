--- The `:Kimi*` user commands and the client-side commands `kimi.enterApiKey` and
--- `kimi.showExplanation`. Every command is a thin call to a server command (docs/protocol.md); the
--- server does the work.
local util = require('kimi.util')

local M = {}

local levels = vim.log.levels

--- Arguments for an action on the current buffer's range.
---@param opts table user-command arguments
---@param client vim.lsp.Client
---@param bufnr integer
local function target(opts, client, bufnr)
  return {
    uri = vim.uri_from_bufnr(bufnr),
    range = util.range(opts, bufnr, client.offset_encoding),
  }
end

--- The result of an action (docs/protocol.md). The server itself reports failures, and edits it
--- could not apply, with `window/showMessage` (and a diagnostic where one helps), so this only adds
--- what it does not say.
---@param result table?
---@param ctx lsp.HandlerContext
local function action_result(result, ctx)
  if type(result) == 'table' and result.requestId ~= nil then
    -- An answer is usually already in the float, filled in live from `kimi/stream`.
    require('kimi.float').finish(result, ctx)
  end
end

--- A command that sends the range as it is: no instruction, no extra arguments.
---@param command string
---@return fun(opts: table)
local function on_range(command)
  return function(opts)
    local bufnr = vim.api.nvim_get_current_buf()
    local client = util.client(bufnr)
    if client then
      util.exec(client, bufnr, command, target(opts, client, bufnr), action_result)
    end
  end
end

M.explain = on_range('kimi.explain')

--- Calls `run` with the command's arguments, or with what the user types (`vim.ui.input`); not when cancelled.
---@param opts table
---@param prompt string
---@param run fun(text: string)
local function with_text(opts, prompt, run)
  if opts.args and opts.args ~= '' then
    run(opts.args)
  else
    vim.ui.input({ prompt = prompt }, function(input)
      if input ~= nil then -- nil: cancelled
        run(input)
      end
    end)
  end
end

---@param opts table
function M.refactor(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr)
  if not client then
    return
  end
  -- Take the range now: the prompt below may move the cursor or clear the visual marks.
  local args = target(opts, client, bufnr)
  local function run(instruction)
    if instruction and instruction ~= '' then
      args.instruction = instruction
    end
    util.exec(client, bufnr, 'kimi.refactor', args, action_result)
  end
  with_text(opts, 'Refactor (empty: let Kimi decide): ', run)
end

--- The other tools' diagnostics on the lines of `range`, for the model to fix.
---@param bufnr integer
---@param range lsp.Range
local function diagnostics_in(bufnr, range)
  local list = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if d.source ~= 'kimi' and d.lnum >= range.start.line and d.lnum <= range['end'].line then
      list[#list + 1] = {
        message = d.message,
        line = d.lnum,
        source = d.source or '',
        code = d.code,
      }
    end
  end
  return list
end

---@param opts table
function M.fix(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr)
  if client then
    local args = target(opts, client, bufnr)
    local diagnostics = diagnostics_in(bufnr, args.range)
    if #diagnostics > 0 then
      args.diagnostics = diagnostics
    end
    util.exec(client, bufnr, 'kimi.fix', args, action_result)
  end
end

M.document = on_range('kimi.document')

---@param opts table
function M.ask(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr)
  if not client then
    return
  end
  -- Without a range the question is about the file, not about the cursor line.
  local visual = vim.fn.mode():match('^[vV\22]') ~= nil
  local args = (opts.range > 0 or visual) and target(opts, client, bufnr) or { uri = vim.uri_from_bufnr(bufnr) }
  local function run(prompt)
    if prompt and prompt ~= '' then
      args.prompt = prompt
      util.exec(client, bufnr, 'kimi.ask', args, action_result)
    end
  end
  with_text(opts, 'Ask Kimi: ', run)
end

---@param n integer?
local function human_tokens(n)
  if type(n) ~= 'number' then
    return '?'
  end
  if n >= 1048576 and n % 1048576 == 0 then
    return math.floor(n / 1048576) .. 'M'
  end
  return n >= 1024 and (math.floor(n / 1024 + 0.5) .. 'k') or tostring(n)
end

local symbols = { USD = '$', CNY = '¥' }

--- 0.6 -> "$0.60", 0.004 -> "$0.004", 27 in CNY -> "¥27.00"; an unknown currency after the number.
---@param amount number
---@param currency string
function M.format_price(amount, currency)
  local text = ('%.2f'):format(amount)
  if math.abs(tonumber(text) - amount) > 1e-9 then
    text = (('%.6f'):format(amount):gsub('0+$', ''))
  end
  local symbol = symbols[currency]
  return symbol and (symbol .. text) or (text .. ' ' .. currency)
end

--- "$0.60 / $3.00 per M in/out, $0.10 cached": the model's price in the account's currency, or nil.
---@param model table a `kimi.listModels` entry
---@param currency string?
---@return string?
function M.price_text(model, currency)
  local price = type(currency) == 'string' and type(model.prices) == 'table' and model.prices[currency] or nil
  if type(price) ~= 'table' or type(price.input) ~= 'number' or type(price.output) ~= 'number' then
    return nil
  end
  local text = ('%s / %s per M in/out'):format(M.format_price(price.input, currency), M.format_price(price.output, currency))
  if type(price.cachedInput) == 'number' and price.cachedInput ~= price.input then
    text = text .. (', %s cached'):format(M.format_price(price.cachedInput, currency))
  end
  return text
end

---@param model table
local function retired(model)
  return model.status == 'retired'
end

--- One line for `vim.ui.select`: id, context length, vision/thinking flags, then the price in the
--- account's currency and what the model is good for, or, for a retired one, its successor.
---@param model table a `kimi.listModels` entry {id, contextLength, vision, thinking, status, successor?, goodFor?, prices?}
---@param current string?
---@param currency string? the account's currency (`kimi.listModels`' `currency`)
function M.format_model(model, current, currency)
  local flags = {}
  if model.vision == true then
    flags[#flags + 1] = 'vision'
  end
  local thinking = model.thinking
  if thinking == true or thinking == 'always' then
    flags[#flags + 1] = 'thinking'
  elseif thinking == 'switchable' then
    flags[#flags + 1] = 'thinking (switchable)'
  end
  if model.reasoningEffort == true then
    flags[#flags + 1] = 'reasoning effort'
  end
  local rest = {}
  if #flags > 0 then
    rest[#rest + 1] = table.concat(flags, ', ')
  end
  if retired(model) then
    rest[#rest + 1] = type(model.successor) == 'string' and ('retired → ' .. model.successor) or 'retired'
  end
  rest[#rest + 1] = M.price_text(model, currency)
  if not retired(model) and type(model.goodFor) == 'string' and model.goodFor ~= '' then
    rest[#rest + 1] = model.goodFor
  end
  local line = ('%s %-32s %6s ctx  %s'):format(
    model.id == current and '*' or ' ',
    model.id,
    human_tokens(model.contextLength),
    table.concat(rest, ' · ')
  )
  return (line:gsub('%s+$', ''))
end

--- The models in the order `:KimiModel` offers them: the one in use, the current ones in the
--- server's order, the retired ones last.
---@param models table[]
---@param current string?
---@return table[]
function M.order_models(models, current)
  local first, active, old = {}, {}, {}
  for _, m in ipairs(models) do
    if type(m) == 'table' and type(m.id) == 'string' then
      local list = m.id == current and first or (retired(m) and old or active)
      list[#list + 1] = m
    end
  end
  return vim.list_extend(vim.list_extend(first, active), old)
end

--- Switch every kimi client to `model` through the settings (no restart): the settings are updated
--- and sent with `workspace/didChangeConfiguration`; `vim.lsp.config('kimi')` is updated too, so a
--- client started later in this session uses the same model.
---@param model string
function M.set_model(model)
  for _, client in ipairs(util.clients()) do
    client.settings = client.settings or {}
    client.settings.kimi = client.settings.kimi or {}
    client.settings.kimi.model = model
    if client.config.settings ~= client.settings then
      client.config.settings = vim.tbl_deep_extend('force', client.config.settings or {}, { kimi = { model = model } })
    end
    client:notify('workspace/didChangeConfiguration', { settings = client.settings })
  end
  vim.lsp.config(util.name, { settings = { kimi = { model = model } }, init_options = { settings = { model = model } } })
end

function M.model()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr, true)
  if not client then
    return
  end
  util.exec(client, bufnr, 'kimi.listModels', {}, function(result)
    local models = type(result) == 'table' and result.models or {}
    if #models == 0 then
      util.notify('the server listed no models' .. (result and result.error and (': ' .. result.error) or ''), levels.WARN)
      return
    end
    if result.error then
      util.notify('could not fetch the live model list (' .. tostring(result.error) .. '); showing the known models', levels.WARN)
    end
    local currency = type(result.currency) == 'string' and result.currency or nil
    vim.ui.select(M.order_models(models, result.current), {
      prompt = ('Kimi model (current: %s%s)'):format(tostring(result.current), currency and (', prices in ' .. currency) or ''),
      kind = 'kimi.model',
      format_item = function(m)
        return M.format_model(m, result.current, currency)
      end,
    }, function(choice)
      if choice then
        M.set_model(choice.id)
        util.notify('model: ' .. choice.id)
      end
    end)
  end)
end

--- Ask for a key (never echoed) and hand it to the server, which stores it in the keychain.
---@param client vim.lsp.Client
---@param bufnr integer
---@param region string?
local function prompt_key(client, bufnr, region)
  local prompt = region and ('Moonshot API key (%s): '):format(region) or 'Moonshot API key: '
  local ok, key = pcall(vim.fn.inputsecret, prompt)
  if not ok or type(key) ~= 'string' or vim.trim(key) == '' then
    util.notify('no key entered', levels.WARN)
    return
  end
  -- The server reports the outcome (stored? verified?) itself with window/showMessage.
  util.exec(client, bufnr, 'kimi.setApiKey', { key = vim.trim(key) })
end

function M.set_key()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr, true)
  if client then
    prompt_key(client, bufnr)
  end
end

--- Client-side command `kimi.enterApiKey {region}` (the server's quick fix for a missing or
--- rejected key).
---@param command lsp.Command
---@param ctx {bufnr: integer, client_id: integer}
function M.enter_api_key(command, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if not client then
    return
  end
  local arg = type(command.arguments) == 'table' and command.arguments[1] or nil
  prompt_key(client, ctx.bufnr, type(arg) == 'table' and arg.region or nil)
end

--- Client-side command `kimi.showExplanation {uri, id}`, the code lens "Kimi: explained · hover to
--- read": the same command goes to the server, which returns the kept explanation
--- (`{text, model, title, done}`, and opens nothing itself for a client with `stream: true`); it is
--- shown in the answer float.
---@param command lsp.Command
---@param ctx {bufnr: integer, client_id: integer}
function M.show_explanation(command, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if not client or client.name ~= util.name then
    client = util.client(ctx.bufnr)
    if not client then
      return
    end
  end
  local bufnr = ctx.bufnr
  -- Not client:exec_cmd(): it would run this client-side command again.
  local params = { command = command.command, arguments = command.arguments }
  client:request('workspace/executeCommand', params, function(err, result, rctx)
    -- vim.lsp.codelens.run() hid the lens line's lenses: fetch them again (the explanation may also be gone).
    local lenses = require('kimi.codelens')
    if vim.api.nvim_buf_is_valid(bufnr) then
      lenses.refresh(bufnr, lenses.shown(bufnr))
    end
    if err then
      util.notify(command.command .. ': ' .. (err.message or vim.inspect(err)), levels.ERROR)
    elseif type(result) ~= 'table' or type(result.text) ~= 'string' then
      util.notify(command.command .. ': the server returned no explanation', levels.ERROR)
    else
      require('kimi.float').show(result, rctx)
    end
  end, bufnr)
end

--- The session's and the balance's lines of `kimi.status` (the server's texts), for :KimiStatus and
--- :checkhealth: `session` is nil for an older server, `balance` nil when neither a balance nor an
--- error was sent.
---@param status table
---@return string? session, string? balance, boolean? balance_ok
function M.account_texts(status)
  local session = type(status.session) == 'table' and type(status.session.text) == 'string' and status.session.text
    or nil
  if type(status.balance) == 'table' and type(status.balance.text) == 'string' then
    local amount = status.balance.amount
    return session, status.balance.text, not (type(amount) == 'number' and amount <= 0)
  end
  if type(status.balanceError) == 'string' and status.balanceError ~= '' then
    return session, 'unknown (' .. status.balanceError .. ')', false
  end
  return session, nil, nil
end

--- `kimi.status` as readable lines (never the key: the server does not send it).
---@param status table
---@return string[]
function M.format_status(status)
  local key = status.keyPresent and ('present (' .. tostring(status.keySource or '?') .. ')') or 'missing'
  local lines = {
    ('kimi-lsp %s'):format(tostring(status.version or '?')),
    ('model:    %s'):format(tostring(status.model)),
    ('region:   %s'):format(tostring(status.region)),
    ('base URL: %s'):format(tostring(status.baseUrl)),
    ('API key:  %s'):format(key),
    ('running:  %s'):format(tostring(status.running or 0)),
  }
  local session, balance = M.account_texts(status)
  if session then
    lines[#lines + 1] = ('session:  %s'):format(session)
  end
  if balance then
    lines[#lines + 1] = ('balance:  %s'):format(balance)
  end
  return lines
end

function M.status()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr, true)
  if client then
    util.exec(client, bufnr, 'kimi.status', {}, function(result)
      if type(result) == 'table' then
        util.notify(table.concat(M.format_status(result), '\n'))
      end
    end)
  end
end

--- `:KimiNextEdit`: `kimi.nextEdit {uri, position}` at the cursor. A suggestion that starts at the
--- cursor comes back as `inline` and is shown as ghost text (lua/kimi/ghost.lua); any other comes as a
--- proposal (`kimi/proposal`, drawn by lua/kimi/proposal.lua).
function M.next_edit()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr)
  if not client then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local args = { uri = params.textDocument.uri, position = params.position }
  util.exec(client, bufnr, 'kimi.nextEdit', args, function(result)
    if type(result) ~= 'table' or result.error or result.cancelled then
      return -- the server said why
    end
    if type(result.inline) == 'table' then
      if vim.api.nvim_buf_is_valid(bufnr) then
        require('kimi.ghost').show_inline(bufnr, client, result.inline)
      end
    elseif not result.proposed and not result.applied then
      util.notify(type(result.message) == 'string' and result.message or 'no next edit to suggest here')
    end
  end)
end

function M.cancel()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = util.client(bufnr, true)
  if client then
    util.exec(client, bufnr, 'kimi.cancel', {}, function(result)
      local n = type(result) == 'table' and result.cancelled or 0
      util.notify(n == 1 and 'cancelled 1 request' or ('cancelled %d requests'):format(n))
    end)
  end
end

return M
