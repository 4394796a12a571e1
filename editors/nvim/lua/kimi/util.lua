--- Small shared helpers: finding the client, turning a selection into an LSP range, running a
--- server command.
local M = {}

--- The name the client runs under (`vim.lsp.config('kimi', ...)`).
M.name = 'kimi'

---@param msg string
---@param level? integer vim.log.levels.*
function M.notify(msg, level)
  vim.notify('kimi: ' .. msg, level or vim.log.levels.INFO, { title = 'kimi' })
end

--- The initialized kimi client attached to `bufnr` or, with `any`, any kimi client (for commands
--- that are not about a buffer, so that they also work from the answer float); nil after telling
--- the user why there is none.
---@param bufnr integer
---@param any? boolean
---@return vim.lsp.Client?
function M.client(bufnr, any)
  local client = vim.lsp.get_clients({ name = M.name, bufnr = bufnr })[1]
  if not client and any then
    client = vim.lsp.get_clients({ name = M.name })[1]
  end
  if not client then
    local running = vim.lsp.get_clients({ name = M.name })[1]
    M.notify(
      running and 'kimi-lsp is not attached to this buffer'
        or 'kimi-lsp is not running: call vim.lsp.enable("kimi") or require("kimi").setup(); see :checkhealth kimi',
      vim.log.levels.WARN
    )
    return nil
  end
  if not client.initialized then
    M.notify('kimi-lsp is still starting, try again in a moment', vim.log.levels.WARN)
    return nil
  end
  return client
end

--- The conversation of the last answer (`threadId` of its result or of its `kimi/stream` `done`),
--- which `:KimiChat` opens.
---@type {id: string, client_id: integer}?
M.thread = nil

---@param id any
---@param client_id integer
function M.remember_thread(id, client_id)
  if type(id) == 'string' and id ~= '' then
    M.thread = { id = id, client_id = client_id }
  end
end

--- All running kimi clients.
---@return vim.lsp.Client[]
function M.clients()
  return vim.lsp.get_clients({ name = M.name })
end

---@param bufnr integer
---@param row integer 1-based
---@return string
local function get_line(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] or ''
end

---@param line string
---@param byte integer 0-based byte offset
---@param encoding string 'utf-8'|'utf-16'|'utf-32'
---@return integer
local function to_character(line, byte, encoding)
  byte = math.max(0, math.min(byte, #line))
  return vim.str_utfindex(line, encoding, byte, false)
end

--- The range a command runs on, as an LSP range in `encoding`.
---
--- - Called from visual mode (a `<Cmd>` mapping): the live selection; visual mode is ended.
--- - Called with a range (`:'<,'>Kimi…`, `:3,7Kimi…`): whole lines, or the exact columns when
---   the range is the last characterwise (`v`) selection.
--- - No range: the cursor line.
---@param opts {range: integer, line1: integer, line2: integer} user-command arguments
---@param bufnr integer
---@param encoding string
---@return lsp.Range
function M.range(opts, bufnr, encoding)
  local s, e, charwise ---@type [integer,integer], [integer,integer], boolean
  local mode = vim.fn.mode()
  if mode == 'v' or mode == 'V' or mode == '\22' then
    local a, b = vim.fn.getpos('v'), vim.fn.getpos('.')
    s, e = { a[2], a[3] - 1 }, { b[2], b[3] - 1 }
    if s[1] > e[1] or (s[1] == e[1] and s[2] > e[2]) then
      s, e = e, s
    end
    charwise = mode == 'v'
    vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'nx', false)
  elseif opts.range and opts.range > 0 then
    local ms, me = vim.api.nvim_buf_get_mark(bufnr, '<'), vim.api.nvim_buf_get_mark(bufnr, '>')
    if vim.fn.visualmode() == 'v' and ms[1] == opts.line1 and me[1] == opts.line2 then
      s, e, charwise = ms, me, true
    else
      s, e, charwise = { opts.line1, 0 }, { opts.line2, 0 }, false
    end
  else
    local row = vim.api.nvim_win_get_cursor(0)[1]
    s, e, charwise = { row, 0 }, { row, 0 }, false
  end

  local first, last = get_line(bufnr, s[1]), get_line(bufnr, e[1])
  local start_char, end_char ---@type integer, integer
  if charwise then
    local end_byte = math.min(e[2], #last)
    if vim.o.selection ~= 'exclusive' and end_byte < #last then
      -- The selection includes the character under its end: step over all of its bytes.
      end_byte = end_byte + vim.str_utf_end(last, end_byte + 1) + 1
    end
    start_char = to_character(first, s[2], encoding)
    end_char = to_character(last, end_byte, encoding)
  else
    start_char, end_char = 0, to_character(last, #last, encoding)
  end
  return {
    start = { line = s[1] - 1, character = start_char },
    ['end'] = { line = e[1] - 1, character = end_char },
  }
end

--- Run server command `command` with one object argument; `on_result(result, ctx)` gets the result,
--- errors are reported here.
---@param client vim.lsp.Client
---@param bufnr integer
---@param command string
---@param args table
---@param on_result? fun(result: any, ctx: lsp.HandlerContext)
---@param on_error? fun(err: table) after the error was reported
function M.exec(client, bufnr, command, args, on_result, on_error)
  if next(args) == nil then
    args = vim.empty_dict() -- an object, not `[]`
  end
  client:exec_cmd({ title = command, command = command, arguments = { args } }, { bufnr = bufnr }, function(err, result, ctx)
    if err then
      -- -32800: RequestCancelled (`:KimiCancel`).
      if err.code == -32800 then
        M.notify(command .. ' cancelled')
      else
        M.notify(command .. ': ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      end
      if on_error then
        on_error(err)
      end
      return
    end
    if on_result then
      on_result(result, ctx)
    end
  end)
end

return M
