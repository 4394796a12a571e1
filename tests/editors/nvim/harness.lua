-- Shared set-up for the Neovim end-to-end scripts run by tests/editors/test_nvim.py.
--
-- Environment (set by the test):
--   KIMI_TEST_PLUGIN   editors/nvim          KIMI_TEST_CMD   the kimi-lsp executable
--   KIMI_TEST_BASE_URL the fake API           KIMI_TEST_OUT   where the JSON result goes
--   KIMI_TEST_FILE     the file to open      KIMI_TEST_MODEL the model setting (optional)
--
-- A script calls `H.run(function(out) ... end)`: `out` is a table written as JSON to KIMI_TEST_OUT
-- when the function returns (exit 0); an error or a timed-out `H.wait` writes `out.error` and exits 1.
--
-- Typing in insert mode needs Neovim's main loop, which a `-l` script never reaches: such a script is
-- run with `-c 'luafile …'` and calls `H.main(function(out) ... end)` instead. The body then runs in a
-- coroutine; `H.wait` and `H.sleep` yield to the main loop, which meanwhile processes the keys given
-- to `H.type` (typeahead, as if typed) and the server's messages.
local H = {}

H.notifications = {} ---@type {msg: string, level: integer}[]
H.progress = {} ---@type {kind: string, title: string?, message: string?}[]

local out_path = assert(os.getenv('KIMI_TEST_OUT'), 'KIMI_TEST_OUT not set')

local function write(out)
  local f = assert(io.open(out_path, 'w'))
  f:write(vim.json.encode(out))
  f:close()
end

--- Wait until `cond()` is truthy; fail the script after `ms`.
---@param ms integer
---@param what string
---@param cond fun(): any
function H.wait(ms, what, cond)
  if H.co and coroutine.running() == H.co then
    local deadline = vim.uv.now() + ms
    while true do
      local v = cond()
      if v then
        return v
      end
      if vim.uv.now() > deadline then
        error('timed out after ' .. ms .. ' ms waiting for ' .. what, 2)
      end
      H.sleep(20)
    end
  end
  local value
  local ok = vim.wait(ms, function()
    value = cond()
    return value
  end, 20)
  if not ok then
    error('timed out after ' .. ms .. ' ms waiting for ' .. what, 2)
  end
  return value
end

--- The kimi client of the current buffer, once initialized.
function H.client()
  return H.wait(20000, 'kimi-lsp to attach and initialize', function()
    local c = vim.lsp.get_clients({ name = 'kimi', bufnr = 0 })[1]
    return c and c.initialized and c or nil
  end)
end

--- Messages whose text contains `needle` (plain): vim.notify calls, and the message history, where
--- Neovim's window/showMessage handler echoes what is not an error.
function H.notified(needle)
  local found = {}
  for _, n in ipairs(H.notifications) do
    if n.msg:find(needle, 1, true) then
      found[#found + 1] = n
    end
  end
  for _, line in ipairs(vim.split(vim.api.nvim_exec2('messages', { output = true }).output, '\n')) do
    if line:find(needle, 1, true) then
      found[#found + 1] = { msg = line, level = vim.log.levels.INFO, echoed = true }
    end
  end
  return found
end

--- Select lines `l1..l2` linewise (leaves '< '> set), like `Vj…<Esc>`.
function H.select_lines(l1, l2)
  vim.api.nvim_win_set_cursor(0, { l1, 0 })
  vim.cmd('normal! V' .. (l2 > l1 and (l2 - l1) .. 'j' or '') .. '\27')
end

--- Count the answers that reach the float (wraps `kimi.float.finish`); returns a function giving the count.
function H.count_answers()
  local float = require('kimi.float')
  local n, finish = 0, float.finish
  float.finish = function(result, ctx)
    finish(result, ctx)
    n = n + 1
  end
  return function()
    return n
  end
end

--- `:'<,'>KimiExplain` over lines `l1..l2`, then wait (20 s at most) until `cond()` holds.
function H.explain(l1, l2, what, cond)
  H.select_lines(l1, l2)
  vim.cmd("'<,'>KimiExplain")
  return H.wait(20000, what, cond)
end

function H.lines(buf)
  return vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false)
end

--- Floating windows currently open.
function H.floats()
  local wins = {}
  for _, w in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(w).relative ~= '' then
      wins[#wins + 1] = w
    end
  end
  return wins
end

--- Diagnostics of the file under test (not of the float, which may have the focus).
function H.diagnostics(buf)
  local list = {}
  for _, d in ipairs(vim.diagnostic.get(buf or H.buf)) do
    list[#list + 1] = {
      lnum = d.lnum,
      end_lnum = d.end_lnum,
      code = d.code,
      source = d.source,
      message = d.message,
      severity = d.severity,
    }
  end
  return list
end

--- Set up the plugin the way a user would, then open KIMI_TEST_FILE.
---@param opts? table extra setup() options
function H.start(opts)
  vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
  vim.cmd.runtime('plugin/kimi.lua')
  vim.notify = function(msg, level)
    H.notifications[#H.notifications + 1] = { msg = tostring(msg), level = level or vim.log.levels.INFO }
  end
  vim.api.nvim_create_autocmd('LspProgress', {
    callback = function(ev)
      local value = ev.data.params.value
      H.progress[#H.progress + 1] = {
        kind = value.kind,
        title = value.title,
        message = value.message,
        status = vim.lsp.status(),
      }
    end,
  })
  local setup = vim.tbl_deep_extend('force', {
    cmd = { assert(os.getenv('KIMI_TEST_CMD')) },
    baseUrl = assert(os.getenv('KIMI_TEST_BASE_URL')),
    model = os.getenv('KIMI_TEST_MODEL') or 'kimi-k2.5',
  }, opts or {})
  require('kimi').setup(setup)
  vim.cmd.edit(assert(os.getenv('KIMI_TEST_FILE')))
  H.buf = vim.api.nvim_get_current_buf()
  return H.client()
end

--- Let the main loop run for `ms` (inside `H.main` only).
function H.sleep(ms)
  assert(H.co and coroutine.running() == H.co, 'H.sleep needs H.main')
  vim.defer_fn(function()
    local ok, err = coroutine.resume(H.co)
    if not ok then
      H.fail(err)
    end
  end, ms)
  coroutine.yield()
end

--- Type `keys` (with <…> key notation) as the user would, then let the main loop process them.
function H.type(keys, ms)
  vim.api.nvim_feedkeys(vim.keycode(keys), 't', false)
  H.sleep(ms or 30)
end

local function finish(out, ok, err)
  out.notifications = H.notifications
  out.messages = vim.api.nvim_exec2('messages', { output = true }).output
  out.progress = H.progress
  if not ok then
    out.error = tostring(err)
    write(out)
    vim.cmd('cquit 1')
    return
  end
  write(out)
  vim.cmd('qall!')
end

--- Like `H.run`, from Neovim's main loop (`-c 'luafile script.lua'`), so that keys typed with `H.type` are
--- processed as typed, insert mode included.
---@param body fun(out: table)
function H.main(body)
  local out = {}
  H.fail = function(err)
    finish(out, false, err)
  end
  H.co = coroutine.create(function()
    local ok, err = xpcall(body, debug.traceback, out)
    vim.schedule(function()
      finish(out, ok, err)
    end)
  end)
  vim.schedule(function()
    local ok, err = coroutine.resume(H.co)
    if not ok then
      H.fail(err)
    end
  end)
end

---@param body fun(out: table)
function H.run(body)
  local out = {}
  local ok, err = xpcall(body, debug.traceback, out)
  out.notifications = H.notifications
  out.messages = vim.api.nvim_exec2('messages', { output = true }).output
  out.progress = H.progress
  if not ok then
    out.error = tostring(err)
    write(out)
    vim.cmd('cquit 1')
    return
  end
  write(out)
  vim.cmd('qall!')
end

return H
