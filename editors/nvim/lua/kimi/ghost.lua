--- Ghost text: the server's inline completion (`textDocument/inlineCompletion`, docs/protocol.md
--- "Inline completion (ghost text)") drawn at the cursor as you type, and `:KimiNextEdit`'s suggestion
--- when it starts at the cursor.
---
--- - After `kimi.completion.debounceMs` without typing in insert mode the plugin asks (trigger kind
---   Automatic; `:KimiComplete` and the `trigger` key ask at once, Invoked). The server debounces too,
---   cancels an older request when a newer one comes and answers typing-through from its cache, so the
---   plugin simply asks again after each change.
--- - The first item is drawn with extmarks (namespace `kimi.ghost`): its first line as inline virtual
---   text at the cursor, the others as virtual lines below, in |hl-KimiGhost| (linked to Comment).
---   Text the item replaces (a next edit) is shown in |hl-KimiGhostReplaced|.
--- - Typing the ghost text's next characters keeps the rest shown; any other change, moving the
---   cursor and leaving insert mode clear it.
--- - `accept` (<M-l>) inserts the whole item, replacing its `range`, as one undo step, then runs the
---   item's `command` (`kimi.completionAccepted`); `accept_word` (<M-w>) inserts its next word;
---   `dismiss` (<C-]>) hides it. A key does what it did before when nothing is shown.
---
--- Neovim 0.12's |vim.lsp.inline_completion| is not used: this module draws the same on 0.11 and
--- 0.12 and adds the word accept and the next edit. `setup({ completion = false })` turns it off.
local api = vim.api
local util = require('kimi.util')

local M = {}

M.ns = api.nvim_create_namespace('kimi.ghost')

--- Whether ghost text is shown (`setup({ completion = false })` turns it off).
M.enabled = true

--- Keys (`setup({ completion = { accept = '<Tab>', accept_word = false } })`); false: not mapped.
M.default_keys = {
  accept = '<M-l>', -- insert and normal mode: the whole suggestion
  accept_word = '<M-w>', -- insert and normal mode: its next word
  dismiss = '<C-]>', -- insert mode
  trigger = '<M-\\>', -- insert mode: ask now (as :KimiComplete)
}

---@type table<string, string|false>
M.keys = vim.deepcopy(M.default_keys)

local METHOD = 'textDocument/inlineCompletion'
local AUTOMATIC, INVOKED = 2, 1 -- InlineCompletionTriggerKind

---@class kimi.Ghost
---@field client_id integer
---@field row integer where the ghost text is drawn (0-based)
---@field col integer byte column
---@field text string what is drawn there (the part of the item not in the buffer yet)
---@field srow integer the range accepting replaces: from (srow, scol) ...
---@field scol integer
---@field erow integer ... to (erow, ecol)
---@field ecol integer
---@field insert string what replaces it
---@field command table? the item's command, run once on accept
---@field tick integer the buffer's changedtick when drawn
---@field marks integer[]

---@class kimi.GhostState
---@field gen integer bumped to drop a pending debounce timer
---@field req {client: vim.lsp.Client, id: integer, tick: integer}? the request in flight
---@field ghost kimi.Ghost?
---@field typed integer changedtick at the last change
---@field accepting boolean an accept is changing the text
---@field pos [integer, integer]? the cursor after the last change

---@type table<integer, kimi.GhostState>
local buffers = {}

local group = api.nvim_create_augroup('kimi.ghost', { clear = true })

local function define_highlights()
  api.nvim_set_hl(0, 'KimiGhost', { link = 'Comment', default = true })
  api.nvim_set_hl(0, 'KimiGhostReplaced', { link = 'DiffDelete', default = true })
end
define_highlights()
api.nvim_create_autocmd('ColorScheme', { group = group, callback = define_highlights })

---@param bufnr integer
---@return vim.lsp.Client?
local function client_of(bufnr)
  for _, c in ipairs(vim.lsp.get_clients({ name = util.name, bufnr = bufnr })) do
    if c.initialized and c.server_capabilities and c.server_capabilities.inlineCompletionProvider then
      return c
    end
  end
end

--- The server's `kimi.completion` settings of `client`, as far as the client knows them.
local function server_settings(client)
  local s = vim.tbl_get(client.settings or {}, 'kimi', 'completion')
  return type(s) == 'table' and s or {}
end

---@param client vim.lsp.Client
local function server_enabled(client)
  return server_settings(client).enabled ~= false
end

---@param client vim.lsp.Client
local function debounce_ms(client)
  local ms = tonumber(server_settings(client).debounceMs)
  return ms and math.max(0, ms) or 120
end

---@param bufnr integer
local function line_of(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

--- An LSP position as (row, byte col), clamped to the buffer.
local function to_byte(bufnr, pos, encoding)
  local count = api.nvim_buf_line_count(bufnr)
  local row = math.max(0, math.floor(tonumber(pos.line) or 0))
  if row >= count then
    return count - 1, #line_of(bufnr, count - 1)
  end
  local line = line_of(bufnr, row)
  local ok, col = pcall(vim.str_byteindex, line, encoding, math.max(0, tonumber(pos.character) or 0), false)
  return row, ok and math.min(col, #line) or #line
end

local function before(r1, c1, r2, c2)
  return r1 < r2 or (r1 == r2 and c1 < c2)
end

---@param bufnr integer
---@return integer row, integer col 0-based
local function cursor(bufnr)
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return -1, -1
  end
  local c = api.nvim_win_get_cursor(win)
  return c[1] - 1, c[2]
end

local function tick(bufnr)
  return api.nvim_buf_get_changedtick(bufnr)
end

local function expand_tabs(s, ts)
  return (s:gsub('\t', (' '):rep(ts)))
end

---@param bufnr integer
local function state(bufnr)
  local s = buffers[bufnr]
  if not s then
    s = { gen = 0, typed = -1, accepting = false }
    buffers[bufnr] = s
  end
  return s
end

--- Remove the drawing (the state stays).
---@param bufnr integer
local function undraw(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

---@param bufnr integer
---@param g kimi.Ghost
local function draw(bufnr, g)
  undraw(bufnr)
  local ts = vim.bo[bufnr].tabstop
  local lines = vim.split(g.text, '\r?\n')
  local first = expand_tabs(lines[1], ts)
  local opts = { priority = 1000, hl_mode = 'combine' }
  if first ~= '' then
    opts.virt_text = { { first, 'KimiGhost' } }
    opts.virt_text_pos = vim.fn.has('nvim-0.10') == 1 and 'inline' or 'overlay'
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      opts.virt_lines[#opts.virt_lines + 1] = { { expand_tabs(lines[i], ts), 'KimiGhost' } }
    end
  end
  g.marks = { api.nvim_buf_set_extmark(bufnr, M.ns, g.row, g.col, opts) }
  -- The text a next edit replaces, struck through.
  if before(g.row, g.col, g.erow, g.ecol) then
    g.marks[2] = api.nvim_buf_set_extmark(bufnr, M.ns, g.row, g.col, {
      end_row = g.erow,
      end_col = g.ecol,
      hl_group = 'KimiGhostReplaced',
      priority = 1000,
    })
  end
end

--- Cancel the pending timer and the request in flight.
---@param bufnr integer
local function cancel(bufnr)
  local s = buffers[bufnr]
  if not s then
    return
  end
  s.gen = s.gen + 1
  if s.req then
    pcall(s.req.client.cancel_request, s.req.client, s.req.id)
    s.req = nil
  end
end

--- Hide the ghost text of `bufnr` (default: the current buffer) and drop what was asked for it.
---@param bufnr? integer
function M.clear(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  cancel(bufnr)
  local s = buffers[bufnr]
  if s then
    s.ghost = nil
  end
  undraw(bufnr)
end

--- The ghost text shown in `bufnr`, for scripts and tests: `{row, col, text, insert}` or nil.
---@param bufnr? integer
function M.get(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local g = buffers[bufnr] and buffers[bufnr].ghost
  if g then
    return { row = g.row, col = g.col, text = g.text, insert = g.insert }
  end
end

--- Show `item` (`{insertText, range?, command?}`, LSP positions) in `bufnr`, asked for at (row, col).
---@param bufnr integer
---@param client vim.lsp.Client
---@param item table
---@param row integer
---@param col integer
---@return boolean shown
function M.show(bufnr, client, item, row, col)
  local text = type(item.insertText) == 'string' and item.insertText
    or (type(item.insertText) == 'table' and item.insertText.value)
  if type(text) ~= 'string' or text == '' then
    M.clear(bufnr)
    return false
  end
  local enc = client.offset_encoding
  local srow, scol, erow, ecol = row, col, row, col
  if type(item.range) == 'table' then
    srow, scol = to_byte(bufnr, item.range.start, enc)
    erow, ecol = to_byte(bufnr, item.range['end'], enc)
  end
  local existing = table.concat(api.nvim_buf_get_text(bufnr, srow, scol, erow, ecol, {}), '\n')
  local g = {
    client_id = client.id,
    srow = srow,
    scol = scol,
    erow = erow,
    ecol = ecol,
    insert = text,
    command = item.command,
    tick = tick(bufnr),
  }
  if text:sub(1, #existing) == existing then
    -- What the range covers is already typed: only the rest is ghost text, after it.
    g.row, g.col, g.text = erow, ecol, text:sub(#existing + 1)
    g.srow, g.scol = erow, ecol
    g.insert = g.text
  else
    g.row, g.col, g.text = srow, scol, text -- a replacement: drawn before the text it replaces
  end
  if g.text == '' then
    M.clear(bufnr)
    return false
  end
  state(bufnr).ghost = g
  draw(bufnr, g)
  return true
end

--- Ask the server for a completion at the cursor of `bufnr`.
---@param bufnr integer
---@param kind integer trigger kind
local function request(bufnr, kind)
  local client = client_of(bufnr)
  local s = state(bufnr)
  if not client or not api.nvim_buf_is_valid(bufnr) then
    return
  end
  if s.req then
    pcall(client.cancel_request, client, s.req.id)
    s.req = nil
  end
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return
  end
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  params.context = { triggerKind = kind }
  local row, col = cursor(bufnr)
  local at_tick = tick(bufnr)
  local id
  local ok, rid = client:request(METHOD, params, function(err, result)
    if s.req and s.req.id == id then
      s.req = nil
    end
    if err or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    local r, c = cursor(bufnr)
    if tick(bufnr) ~= at_tick or r ~= row or c ~= col then
      return -- typed or moved since: a newer request is on its way, or none is wanted
    end
    if kind == AUTOMATIC and not vim.fn.mode():match('^i') then
      return
    end
    local items = type(result) == 'table' and (result.items or result) or {}
    if items[1] then
      M.show(bufnr, client, items[1], row, col)
    elseif kind == INVOKED then
      M.clear(bufnr)
      util.notify('no completion here')
    end
  end, bufnr)
  if ok and rid then
    id = rid
    s.req = { client = client, id = rid, tick = at_tick }
  end
end

--- `:KimiComplete`: ask now (trigger kind Invoked), in insert or normal mode.
function M.complete()
  local bufnr = api.nvim_get_current_buf()
  if not util.client(bufnr) then
    return
  end
  if not client_of(bufnr) then
    util.notify('kimi-lsp offers no inline completion (an older server?)', vim.log.levels.WARN)
    return
  end
  cancel(bufnr)
  request(bufnr, INVOKED)
end

--- Show a `kimi.nextEdit` result's `inline` (`{insertText, range, position}`) as ghost text.
---@param bufnr integer
---@param client vim.lsp.Client
---@param inline table
function M.show_inline(bufnr, client, inline)
  local row, col = to_byte(bufnr, inline.position or (inline.range and inline.range.start) or {}, client.offset_encoding)
  M.clear(bufnr)
  return M.show(bufnr, client, inline, row, col)
end

--- The first word of `text`: leading blanks and a run of word characters, or of other characters.
local function first_word(text)
  return text:match('^%s*[%w_]+') or text:match('^%s*[^%s%w_]+') or text:match('^%s+') or text
end

---@param bufnr integer
---@param g kimi.Ghost
local function run_command(bufnr, g)
  local client = vim.lsp.get_client_by_id(g.client_id)
  local cmd = g.command
  g.command = nil
  if client and type(cmd) == 'table' and type(cmd.command) == 'string' then
    client:exec_cmd(cmd, { bufnr = bufnr }, function() end)
  end
end

--- Accept the ghost text of the current buffer: all of it, or (`word`) its next word.
---@param word? boolean
---@return boolean accepted
function M.accept(word)
  local bufnr = api.nvim_get_current_buf()
  local s = buffers[bufnr]
  local g = s and s.ghost
  if not g then
    return false
  end
  cancel(bufnr)
  local insert, srow, scol, erow, ecol = g.insert, g.srow, g.scol, g.erow, g.ecol
  local partial = false
  if word and g.srow == g.row and g.scol == g.col and g.erow == g.row and g.ecol == g.col then
    local w = first_word(g.text)
    partial = #w < #g.text
    insert = w
  end
  local lines = vim.split(insert, '\r?\n')
  s.accepting = true
  local ok, err = pcall(api.nvim_buf_set_text, bufnr, srow, scol, erow, ecol, lines)
  s.accepting = false
  if not ok then
    M.clear(bufnr)
    util.notify('could not insert the completion: ' .. tostring(err), vim.log.levels.WARN)
    return false
  end
  local end_row = srow + #lines - 1
  local end_col = (#lines == 1 and scol or 0) + #lines[#lines]
  local insert_mode = vim.fn.mode():match('^i') ~= nil
  if not insert_mode and end_col > 0 then
    end_col = end_col - 1 -- normal mode: on the last inserted character
  end
  pcall(api.nvim_win_set_cursor, 0, { end_row + 1, end_col })
  s.pos = { cursor(bufnr) }
  run_command(bufnr, g)
  if partial then
    -- The rest stays shown where the cursor is now; the next request answers it from the cache.
    local rest = g.text:sub(#insert + 1)
    g.row, g.col, g.srow, g.scol, g.erow, g.ecol = end_row, end_col, end_row, end_col, end_row, end_col
    g.text, g.insert, g.tick = rest, rest, tick(bufnr)
    s.typed = g.tick
    draw(bufnr, g)
  else
    s.ghost = nil
    s.typed = tick(bufnr)
    undraw(bufnr)
  end
  return true
end

--- The text changed in insert mode: keep what the typing went through, then ask again.
---@param bufnr integer
local function on_change(bufnr)
  local s = state(bufnr)
  if s.accepting then
    return
  end
  local t = tick(bufnr)
  if t == s.typed then
    return
  end
  s.typed = t
  local g = s.ghost
  local row, col = cursor(bufnr)
  s.pos = { row, col }
  if g then
    local plain = g.srow == g.row and g.scol == g.col and g.erow == g.row and g.ecol == g.col
    local typed = (plain and row == g.row and col > g.col) and line_of(bufnr, row):sub(g.col + 1, col) or nil
    if typed and g.text:sub(1, #typed) == typed and #typed < #g.text then
      g.text = g.text:sub(#typed + 1)
      g.insert = g.text
      g.col, g.scol, g.ecol, g.tick = col, col, col, t
      draw(bufnr, g)
    else
      s.ghost = nil
      undraw(bufnr)
    end
  end
  local client = client_of(bufnr)
  if not (client and M.enabled and server_enabled(client)) then
    return
  end
  s.gen = s.gen + 1
  local gen = s.gen
  vim.defer_fn(function()
    if s.gen == gen and api.nvim_get_current_buf() == bufnr and vim.fn.mode():match('^i') then
      request(bufnr, AUTOMATIC)
    end
  end, debounce_ms(client))
end

--- The cursor moved: a move that is not typing clears the ghost text.
---@param bufnr integer
---@param insert boolean CursorMovedI
local function on_move(bufnr, insert)
  local s = buffers[bufnr]
  if not s or s.accepting then
    return
  end
  if insert and tick(bufnr) ~= s.typed then
    return -- typing, and TextChangedI has not run yet: on_change decides
  end
  local row, col = cursor(bufnr)
  if insert and s.pos and s.pos[1] == row and s.pos[2] == col then
    return -- where the last change (or accept) left it
  end
  local g = s.ghost
  if g and row == g.row and col == g.col then
    return
  end
  if g or insert then -- (a normal-mode move with nothing shown: an answer on its way is dropped when it comes)
    M.clear(bufnr)
  end
end

local actions = {} ---@type table<string, fun()>

--- An expr mapping: the action when ghost text is shown, else what `lhs` does without the mapping.
---@param lhs string
---@param name string a key of `actions`
---@param insert boolean
local function expr(lhs, name, insert)
  return function()
    local bufnr = api.nvim_get_current_buf()
    if buffers[bufnr] and buffers[bufnr].ghost then
      -- <C-g>u: the accept is an undo step of its own, apart from the typing before it.
      return (insert and '<C-g>u' or '') .. '<Cmd>lua require("kimi.ghost")._key("' .. name .. '")<CR>'
    end
    return lhs
  end
end

---@param name string
function M._key(name)
  local fn = actions[name]
  if fn then
    fn()
  end
end

---@type table<integer, {mode: string, lhs: string}[]>
local mapped = {}

---@param bufnr integer
local function unmap(bufnr)
  for _, m in ipairs(mapped[bufnr] or {}) do
    pcall(vim.keymap.del, m.mode, m.lhs, { buffer = bufnr })
  end
  mapped[bufnr] = nil
end

---@param bufnr integer
local function map(bufnr)
  unmap(bufnr)
  local list = {}
  local function set(modes, name, fn, desc)
    local lhs = M.keys[name]
    if type(lhs) ~= 'string' or lhs == '' then
      return
    end
    actions[name] = fn
    for _, mode in ipairs(modes) do
      vim.keymap.set(mode, lhs, expr(lhs, name, mode == 'i'), { buffer = bufnr, expr = true, silent = true, desc = desc })
      list[#list + 1] = { mode = mode, lhs = lhs }
    end
  end
  local k = M.keys
  set({ 'i', 'n' }, 'accept', function()
    M.accept(false)
  end, 'Kimi: accept the ghost text')
  set({ 'i', 'n' }, 'accept_word', function()
    M.accept(true)
  end, 'Kimi: accept the next word of the ghost text')
  set({ 'i' }, 'dismiss', function()
    M.clear(0)
  end, 'Kimi: hide the ghost text')
  if type(k.trigger) == 'string' and k.trigger ~= '' then
    vim.keymap.set('i', k.trigger, M.complete, { buffer = bufnr, silent = true, desc = 'Kimi: ask for ghost text here' })
    list[#list + 1] = { mode = 'i', lhs = k.trigger }
  end
  mapped[bufnr] = list
end

---@type table<integer, integer> bufnr -> augroup
local attached = {}

--- Start ghost text in `bufnr` (kimi attached to it): the autocmds and the keys.
---@param client vim.lsp.Client
---@param bufnr integer
function M.attach(client, bufnr)
  if not M.enabled or attached[bufnr] or not (client.server_capabilities or {}).inlineCompletionProvider then
    return
  end
  local g = api.nvim_create_augroup('kimi.ghost.' .. bufnr, { clear = true })
  attached[bufnr] = g
  api.nvim_create_autocmd('TextChangedI', {
    group = g,
    buffer = bufnr,
    callback = function()
      on_change(bufnr)
    end,
  })
  api.nvim_create_autocmd({ 'CursorMovedI', 'CursorMoved' }, {
    group = g,
    buffer = bufnr,
    callback = function(ev)
      on_move(bufnr, ev.event == 'CursorMovedI')
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave', 'TextChanged' }, {
    group = g,
    buffer = bufnr,
    callback = function(ev)
      local st = state(bufnr)
      if st.accepting or (ev.event == 'TextChanged' and tick(bufnr) == st.typed) then
        return -- an accept's own change
      end
      if ev.event == 'TextChanged' and st.req and st.req.tick == tick(bufnr) then
        return -- asked for after this change (:KimiComplete right after an edit)
      end
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd({ 'BufWipeout', 'LspDetach' }, {
    group = g,
    buffer = bufnr,
    callback = function(ev)
      if ev.event == 'LspDetach' and ev.data and ev.data.client_id ~= client.id then
        return
      end
      M.detach(bufnr)
    end,
  })
  map(bufnr)
end

--- Stop ghost text in `bufnr`.
---@param bufnr integer
function M.detach(bufnr)
  M.clear(bufnr)
  if attached[bufnr] then
    pcall(api.nvim_del_augroup_by_id, attached[bufnr])
    attached[bufnr] = nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    unmap(bufnr)
  else
    mapped[bufnr] = nil
  end
  buffers[bufnr] = nil
end

--- `setup({ completion = ... })`: false turns ghost text off, a table sets the keys.
---@param enabled boolean
---@param keys? table
function M.configure(enabled, keys)
  M.enabled = enabled
  if type(keys) == 'table' then
    M.keys = vim.tbl_extend('force', vim.deepcopy(M.default_keys), keys)
  end
  for bufnr in pairs(attached) do
    M.detach(bufnr)
  end
  if enabled then
    for _, client in ipairs(util.clients()) do
      for bufnr in pairs(client.attached_buffers or {}) do
        M.attach(client, bufnr)
      end
    end
  end
end

return M
