--- Conversations (docs/protocol.md "Conversations (threads)"): every answer (explain, ask, custom
--- `show` actions) is a thread the server keeps; `:KimiChat` opens the last answer's as a Markdown
--- buffer, `kimi://chat/<threadId>`:
---
---   # <title>                          the thread's title
---   ## 1. <question>                   each turn: the question, the references the server read
---   References: `lib.py:1-2`, …        (`#file:`, `#selection`, …), its note, then the answer
---   <answer>                           (the reasoning is not shown)
---   ---
---   ## Ask a follow-up                 everything below this line is the next question
---   <your question>
---
--- `<CR>` in normal mode (or `:w`) sends the question as `kimi.ask {prompt, threadId}`: the turn
--- is added and the answer streams into the buffer (`kimi/stream` content deltas for that request).
--- `#file:` paths complete with the buffer's 'omnifunc' (|i_CTRL-X_CTRL-O|), from the workspace's
--- files. `<C-c>` cancels the answer being written. `:KimiChats` lists the threads (`kimi.threads`),
--- `:KimiChat!` / `:KimiChatNew` start a new conversation (its first question goes without a
--- threadId), `:KimiChatExport` puts `kimi.exportThread`'s Markdown in a new buffer.
local api = vim.api
local util = require('kimi.util')

local M = {}

M.ns = api.nvim_create_namespace('kimi.chat')

--- The line above the question being typed.
M.MARKER = '## Ask a follow-up'

---@class kimi.ChatTurn
---@field question string
---@field answer string
---@field references string[]?
---@field note string?
---@field error string?
---@field pending boolean? the answer is being written
---@field stream string[]? its content deltas so far

---@class kimi.Chat
---@field buf integer
---@field client_id integer
---@field thread_id string? nil: a new conversation, until its first answer
---@field title string
---@field model string?
---@field turns kimi.ChatTurn[]
---@field request_id any the follow-up being answered
---@field busy boolean a question is on its way
---@field scheduled boolean

---@type table<integer, kimi.Chat> buffer -> chat
local chats = {}
---@type table<string, kimi.Chat> 'client_id:requestId' -> chat, for the stream
local streaming = {}
---@type table<integer, kimi.Chat[]> client_id -> chats whose question has not started streaming yet
local waiting = {}
local new_count = 0

local function key(client_id, request_id)
  return tostring(client_id) .. ':' .. tostring(request_id)
end

local function str(v)
  return type(v) == 'string' and v or nil
end

--- The chat of `bufnr` (default: the current buffer), for scripts and tests.
---@param bufnr? integer
---@return kimi.Chat?
function M.get(bufnr)
  return chats[(bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr]
end

---@param chat kimi.Chat
---@return integer? row 0-based row of the marker line
local function marker_row(chat)
  local lines = api.nvim_buf_get_lines(chat.buf, 0, -1, false)
  for i = #lines, 1, -1 do
    if lines[i] == M.MARKER then
      return i - 1
    end
  end
end

--- The question typed below the marker line.
---@param chat kimi.Chat
---@return string
function M.prompt(chat)
  local row = marker_row(chat)
  if not row then
    return ''
  end
  return vim.trim(table.concat(api.nvim_buf_get_lines(chat.buf, row + 1, -1, false), '\n'))
end

---@param text string
local function split(text)
  return vim.split(text, '\r?\n')
end

---@param chat kimi.Chat
---@return string[]
local function build(chat)
  local lines = { '# ' .. chat.title }
  if #chat.turns == 0 then
    vim.list_extend(lines, {
      '',
      'A new conversation: type your question below, then <CR> (normal mode) or :w.',
      'Name what it is about with `#file:path`, `#file:path:10-40`, `#symbol:name`.',
    })
  end
  for i, turn in ipairs(chat.turns) do
    local q = turn.question ~= '' and turn.question or (i == 1 and chat.title or '(no question)')
    local qlines = split(q)
    lines[#lines + 1] = ''
    lines[#lines + 1] = ('## %d. %s'):format(i, qlines[1])
    for j = 2, #qlines do
      lines[#lines + 1] = qlines[j]
    end
    if type(turn.references) == 'table' and #turn.references > 0 then
      local refs = vim.tbl_map(function(r)
        return '`' .. tostring(r) .. '`'
      end, turn.references)
      lines[#lines + 1] = ''
      lines[#lines + 1] = 'References: ' .. table.concat(refs, ', ')
    end
    if turn.note and turn.note ~= '' then
      lines[#lines + 1] = ''
      lines[#lines + 1] = '> ' .. turn.note
    end
    lines[#lines + 1] = ''
    local answer = turn.answer ~= '' and turn.answer or table.concat(turn.stream or {})
    if answer ~= '' then
      vim.list_extend(lines, split(vim.trim(answer)))
    end
    if turn.error then
      lines[#lines + 1] = '**Error:** ' .. turn.error
    elseif turn.pending and answer == '' then
      lines[#lines + 1] = '_thinking…_'
    end
  end
  lines[#lines + 1] = ''
  lines[#lines + 1] = '---'
  lines[#lines + 1] = M.MARKER
  return lines
end

---@param chat kimi.Chat
local function render(chat)
  chat.scheduled = false
  local buf = chat.buf
  if not api.nvim_buf_is_valid(buf) then
    return
  end
  -- Keep what is typed below the marker, and the cursor's place in it.
  local old_marker = marker_row(chat)
  local prompt = old_marker and api.nvim_buf_get_lines(buf, old_marker + 1, -1, false) or {}
  if #prompt == 0 then
    prompt = { '' }
  end
  local wins = vim.fn.win_findbuf(buf)
  local cursors = {}
  for _, w in ipairs(wins) do
    cursors[w] = api.nvim_win_get_cursor(w)
  end
  local lines = build(chat)
  local row = #lines -- the 0-based row of the first prompt line
  vim.list_extend(lines, prompt)
  vim.bo[buf].modifiable = true
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modified = false
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  local busy = chat.busy and '  answering… <C-c> cancels' or '  <CR> or :w sends · #file: completes with <C-x><C-o>'
  api.nvim_buf_set_extmark(buf, M.ns, row - 1, 0, { virt_text = { { busy, 'Comment' } }, virt_text_pos = 'eol' })
  for w, c in pairs(cursors) do
    if api.nvim_win_is_valid(w) then
      local r = c[1]
      if old_marker and r > old_marker then
        r = row + (r - old_marker - 1) -- on the marker or in the prompt: the same line of it
      end
      r = math.max(1, math.min(r, #lines))
      pcall(api.nvim_win_set_cursor, w, { r, c[2] })
    end
  end
end

---@param chat kimi.Chat
local function schedule(chat)
  if not chat.scheduled then
    chat.scheduled = true
    vim.schedule(function()
      render(chat)
    end)
  end
end

--- The workspace folder of `client` (else the current directory).
---@param client vim.lsp.Client?
local function root_of(client)
  if client then
    if client.root_dir then
      return client.root_dir
    end
    local folder = (client.workspace_folders or {})[1]
    if folder then
      return vim.uri_to_fname(folder.uri)
    end
  end
  return vim.fn.getcwd()
end

local SKIP = { ['node_modules'] = true, ['__pycache__'] = true, ['.git'] = true, ['.venv'] = true }

--- 'omnifunc' of the chat buffers: completes the path after `#file:` with the workspace's files.
---@param findstart integer
---@param base string
function M.omnifunc(findstart, base)
  if findstart == 1 then
    local col = api.nvim_win_get_cursor(0)[2]
    local before = api.nvim_get_current_line():sub(1, col)
    local start = before:find('#file:[^%s]*$')
    if not start then
      return -3 -- not after #file:: no completion, silently
    end
    return start - 1 + #'#file:'
  end
  local chat = M.get(0)
  local root = root_of(chat and vim.lsp.get_client_by_id(chat.client_id) or util.clients()[1])
  local words = {}
  local ok, iter = pcall(vim.fs.dir, root, {
    depth = 8,
    skip = function(dir)
      local name = vim.fs.basename(dir)
      return not (SKIP[name] or name:sub(1, 1) == '.')
    end,
  })
  if not ok then
    return words
  end
  local n = 0
  for path, kind in iter do
    n = n + 1
    if n > 5000 or #words >= 200 then
      break
    end
    if kind == 'file' and (base == '' or path:sub(1, #base) == base or path:find(base, 1, true)) then
      words[#words + 1] = { word = path, menu = '[file]' }
    end
  end
  table.sort(words, function(a, b)
    local pa, pb = a.word:sub(1, #base) == base, b.word:sub(1, #base) == base
    if pa ~= pb then
      return pa
    end
    return a.word < b.word
  end)
  return words
end

---@param chat kimi.Chat
local function cancel(chat)
  local client = vim.lsp.get_client_by_id(chat.client_id)
  if client and chat.request_id ~= nil and chat.busy then
    util.exec(client, chat.buf, 'kimi.cancel', { requestId = chat.request_id })
  end
end

---@param chat kimi.Chat
local function name_buffer(chat)
  local name = 'kimi://chat/' .. (chat.thread_id or ('new-' .. new_count))
  pcall(api.nvim_buf_set_name, chat.buf, name)
end

--- Send the question typed below the marker line as a follow-up (or a new conversation's first
--- question); the answer streams into the buffer.
---@param bufnr? integer
function M.send(bufnr)
  local chat = M.get(bufnr)
  if not chat then
    return
  end
  local question = M.prompt(chat)
  if question == '' then
    util.notify('type your question below the "' .. M.MARKER .. '" line first', vim.log.levels.WARN)
    return
  end
  if chat.busy then
    util.notify('the answer is still being written (<C-c> cancels it)', vim.log.levels.WARN)
    return
  end
  local client = vim.lsp.get_client_by_id(chat.client_id) or util.client(chat.buf, true)
  if not client then
    return
  end
  chat.client_id = client.id
  local turn = { question = question, answer = '', pending = true, stream = {} } ---@type kimi.ChatTurn
  chat.turns[#chat.turns + 1] = turn
  chat.busy = true
  local row = marker_row(chat)
  if row then
    api.nvim_buf_set_lines(chat.buf, row + 1, -1, false, { '' }) -- the question is sent: empty the prompt
  end
  render(chat)
  waiting[client.id] = waiting[client.id] or {}
  table.insert(waiting[client.id], chat)
  local args = { prompt = question, threadId = chat.thread_id }
  local function finished()
    turn.pending = false
    chat.busy = false
    for i, c in ipairs(waiting[client.id] or {}) do
      if c == chat then
        table.remove(waiting[client.id], i)
        break
      end
    end
    if chat.request_id ~= nil then
      streaming[key(client.id, chat.request_id)] = nil
    end
    chat.request_id = nil
    render(chat)
  end
  util.exec(client, chat.buf, 'kimi.ask', args, function(result)
    result = type(result) == 'table' and result or {}
    if result.error then
      turn.error = str(result.error.message) or 'failed'
    elseif result.cancelled then
      turn.error = 'cancelled'
    else
      turn.answer = str(result.text) or table.concat(turn.stream)
      turn.references = type(result.references) == 'table' and result.references or nil
      turn.note = str(result.note)
      chat.model = str(result.model) or chat.model
      if str(result.threadId) and result.threadId ~= chat.thread_id then
        chat.thread_id = result.threadId
        if #chat.turns == 1 then
          chat.title = question:gsub('\n.*', '')
        end
        name_buffer(chat)
      end
      util.remember_thread(result.threadId, client.id)
    end
    finished()
  end, function(err)
    turn.error = err.code == -32800 and 'cancelled' or tostring(err.message)
    finished()
  end)
end

--- `kimi/stream` (called by lua/kimi/float.lua first): a follow-up sent from a chat buffer is
--- claimed here and streams into it. Returns true when the notification was a chat's.
---@param params table
---@param ctx lsp.HandlerContext
---@return boolean
function M.on_stream(params, ctx)
  local k = key(ctx.client_id, params.requestId)
  if params.kind == 'start' then
    local queue = waiting[ctx.client_id]
    local uri = params.uri
    -- A chat's question carries no uri; :KimiAsk always sends one.
    if queue and #queue > 0 and params.output == 'show' and (uri == nil or uri == vim.NIL) then
      local chat = table.remove(queue, 1)
      chat.request_id = params.requestId
      streaming[k] = chat
      chat.model = str(params.model) or chat.model
      return true
    end
    return false
  end
  local chat = streaming[k]
  if not chat then
    return false
  end
  local turn = chat.turns[#chat.turns]
  if params.kind == 'content' and type(params.text) == 'string' and turn then
    turn.stream = turn.stream or {}
    table.insert(turn.stream, params.text)
    schedule(chat)
  elseif params.kind == 'done' then
    if turn and type(params.error) == 'table' then
      turn.error = str(params.error.message) or 'failed'
    end
    schedule(chat)
  end
  return true
end

---@param buf integer
---@param chat kimi.Chat
local function setup_buffer(buf, chat)
  vim.bo[buf].buftype = 'acwrite' -- set before the filetype: LSP clients do not attach to it
  vim.bo[buf].bufhidden = 'hide'
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = 'markdown'
  vim.bo[buf].omnifunc = "v:lua.require'kimi.chat'.omnifunc"
  api.nvim_create_autocmd('BufWriteCmd', {
    buffer = buf,
    callback = function()
      vim.bo[buf].modified = false
      M.send(buf)
    end,
  })
  api.nvim_create_autocmd('BufWipeout', {
    buffer = buf,
    callback = function()
      chats[buf] = nil
    end,
  })
  vim.keymap.set('n', '<CR>', function()
    return M.prompt(chat) ~= '' and '<Cmd>lua require("kimi.chat").send()<CR>' or '<CR>'
  end, { buffer = buf, expr = true, desc = 'Kimi: send the question' })
  vim.keymap.set('n', '<C-c>', function()
    cancel(chat)
  end, { buffer = buf, desc = 'Kimi: cancel the answer being written' })
end

--- Show `chat`'s buffer: in the window that already has it, else in a split.
---@param chat kimi.Chat
local function show(chat)
  local win = vim.fn.win_findbuf(chat.buf)[1]
  if win then
    api.nvim_set_current_win(win)
  else
    vim.cmd((vim.o.columns >= 160 and 'vertical ' or '') .. 'split')
    api.nvim_win_set_buf(0, chat.buf)
    vim.wo[0][0].wrap = true
    vim.wo[0][0].linebreak = true
  end
  local last = api.nvim_buf_line_count(chat.buf)
  api.nvim_win_set_cursor(0, { last, 0 })
end

---@param client_id integer
---@param thread_id string?
---@return kimi.Chat
local function new_chat(client_id, thread_id)
  local buf = api.nvim_create_buf(true, false)
  local chat = {
    buf = buf,
    client_id = client_id,
    thread_id = thread_id,
    title = thread_id and 'Kimi conversation' or 'New conversation',
    turns = {},
    busy = false,
    scheduled = false,
  }
  chats[buf] = chat
  if not thread_id then
    new_count = new_count + 1
  end
  name_buffer(chat)
  setup_buffer(buf, chat)
  return chat
end

--- The thread `{threadId, title, turns: [...]}` (a `kimi.thread` result) into `chat`.
---@param chat kimi.Chat
---@param thread table
local function load(chat, thread)
  chat.title = str(thread.title) or chat.title
  chat.model = str(thread.model) or chat.model
  chat.turns = {}
  for _, t in ipairs(type(thread.turns) == 'table' and thread.turns or {}) do
    chat.turns[#chat.turns + 1] = {
      question = str(t.question) or '',
      answer = str(t.answer) or '',
      references = type(t.references) == 'table' and t.references or nil,
      note = str(t.note),
    }
  end
end

--- Open thread `thread_id` of `client` in its chat buffer (fetched again with `kimi.thread`).
---@param client vim.lsp.Client
---@param thread_id string
function M.open_thread(client, thread_id)
  local chat
  for _, c in pairs(chats) do
    if c.thread_id == thread_id and c.client_id == client.id and api.nvim_buf_is_valid(c.buf) then
      chat = c
    end
  end
  chat = chat or new_chat(client.id, thread_id)
  show(chat)
  if chat.busy then
    return -- an answer is streaming into it: it is up to date
  end
  util.exec(client, chat.buf, 'kimi.thread', { threadId = thread_id }, function(result)
    if type(result) ~= 'table' or not api.nvim_buf_is_valid(chat.buf) then
      return
    end
    load(chat, result)
    render(chat)
    for _, w in ipairs(vim.fn.win_findbuf(chat.buf)) do
      api.nvim_win_set_cursor(w, { api.nvim_buf_line_count(chat.buf), 0 })
    end
  end)
  render(chat)
end

--- `:KimiChatNew`: a new conversation; its first question goes without a threadId.
function M.new()
  local client = util.client(api.nvim_get_current_buf(), true)
  if not client then
    return
  end
  local chat = new_chat(client.id, nil)
  render(chat)
  show(chat)
end

--- `:KimiChat` opens the conversation of the last answer (else the newest one); `:KimiChat!` a new one.
---@param opts? table user-command arguments
function M.open(opts)
  if opts and opts.bang then
    return M.new()
  end
  local here = M.get(0)
  if here then
    return show(here)
  end
  local last = util.thread
  local client = last and vim.lsp.get_client_by_id(last.client_id)
  if client and last then
    return M.open_thread(client, last.id)
  end
  client = util.client(api.nvim_get_current_buf(), true)
  if not client then
    return
  end
  util.exec(client, 0, 'kimi.threads', {}, function(result)
    local newest = type(result) == 'table' and type(result.threads) == 'table' and result.threads[1]
    if newest and str(newest.threadId) then
      M.open_thread(client, newest.threadId)
    else
      M.new()
    end
  end)
end

--- One line of `:KimiChats`.
---@param t table a `kimi.threads` entry
function M.format_thread(t)
  local turns = tonumber(t.turns) or 0
  local file = str(t.uri) and vim.fn.fnamemodify(vim.uri_to_fname(t.uri), ':~:.') or nil
  local parts = { str(t.title) or tostring(t.threadId), ('%d turn%s'):format(turns, turns == 1 and '' or 's') }
  if str(t.model) then
    parts[#parts + 1] = t.model
  end
  if file then
    parts[#parts + 1] = file
  end
  return table.concat(parts, ' · ')
end

--- `:KimiChats`: pick a conversation of this workspace (newest first) and open it.
function M.pick()
  local client = util.client(api.nvim_get_current_buf(), true)
  if not client then
    return
  end
  util.exec(client, 0, 'kimi.threads', {}, function(result)
    local threads = type(result) == 'table' and type(result.threads) == 'table' and result.threads or {}
    if #threads == 0 then
      util.notify('no conversations yet: explain or ask something first')
      return
    end
    vim.ui.select(threads, {
      prompt = 'Kimi conversations',
      kind = 'kimi.thread',
      format_item = M.format_thread,
    }, function(choice)
      if choice and str(choice.threadId) then
        M.open_thread(client, choice.threadId)
      end
    end)
  end)
end

--- `:KimiChatExport`: the conversation (of this chat buffer, else of the last answer) as Markdown
--- (`kimi.exportThread`) in a new buffer, to `:write` where you like.
function M.export()
  local chat = M.get(0)
  local id = chat and chat.thread_id or (util.thread and util.thread.id)
  local client = chat and vim.lsp.get_client_by_id(chat.client_id)
    or (util.thread and vim.lsp.get_client_by_id(util.thread.client_id))
    or util.client(api.nvim_get_current_buf(), true)
  if not client then
    return
  end
  if not id then
    util.notify('no conversation to export yet', vim.log.levels.WARN)
    return
  end
  util.exec(client, 0, 'kimi.exportThread', { threadId = id }, function(result)
    if type(result) ~= 'table' or type(result.markdown) ~= 'string' then
      return
    end
    vim.cmd('new')
    local buf = api.nvim_get_current_buf()
    vim.bo[buf].buftype = 'nofile'
    vim.bo[buf].swapfile = false
    pcall(api.nvim_buf_set_name, buf, 'kimi://export/' .. id .. '.md')
    vim.bo[buf].filetype = 'markdown'
    api.nvim_buf_set_lines(buf, 0, -1, false, split(result.markdown))
  end)
end

return M
