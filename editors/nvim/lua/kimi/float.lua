--- The answer float: opens on `kimi/stream` `start` for explanations and questions, fills in live
--- from the `content` deltas and shows the command's final text when its result arrives. The code
--- lens "Kimi: explained" (`kimi.showExplanation`) shows a kept explanation in it again.
---
--- The reasoning (`reasoning` deltas) goes above the answer, quoted, in a fold that starts closed:
--- one `> reasoning… (N lines)` line; `r` (or `za` on it) shows it. Keys in the float: `q` closes
--- it, `r` toggles the reasoning, `<C-c>` cancels the request.
local api = vim.api

local M = {}

--- Options (`require('kimi').setup({ float = {...} })`).
M.options = {
  border = nil, ---@type string|string[]? nil: 'winborder', or 'rounded' when that is empty
  max_width = 88,
  max_height = 0.6, ---@type number lines, or a fraction of the editor height when < 1
  enter = true, -- focus the float when it opens (so `q` and scrolling work at once)
}

---@class kimi.Answer
---@field key string
---@field client_id integer
---@field request_id any
---@field title string
---@field model string?
---@field reasoning string[] deltas
---@field content string[] deltas
---@field final string? the command result's text (wins over the deltas)
---@field partial boolean? `final` is an explanation still being written (shown from a code lens)
---@field status string?
---@field done table? the `done` notification
---@field buf integer?
---@field win integer?
---@field closed boolean the user closed the float: never reopen it
---@field framed boolean? the float has a border (so a title and footer)
---@field max_height integer?
---@field pending boolean a render is scheduled

---@type table<string, kimi.Answer>
local answers = {}
---@type table<string, string> requests that edit the buffer (no float): key -> title, until `done`
local edits = {}
---@type kimi.Answer?
local shown -- the answer in the float

local function key(client_id, request_id)
  return tostring(client_id) .. ':' .. tostring(request_id)
end

local function border()
  if M.options.border then
    return M.options.border
  end
  return vim.o.winborder ~= '' and vim.o.winborder or 'rounded'
end

---@param answer kimi.Answer
---@return string body, string reasoning
local function texts(answer)
  return answer.final or table.concat(answer.content), table.concat(answer.reasoning)
end

---@param answer kimi.Answer
local function footer(answer)
  local parts = {}
  if answer.model then
    parts[#parts + 1] = answer.model
  end
  local done = answer.done
  if done then
    if done.cancelled then
      parts[#parts + 1] = 'cancelled'
    elseif done.error then
      parts[#parts + 1] = 'failed'
    elseif type(done.elapsedMs) == 'number' then
      parts[#parts + 1] = ('%.1f s'):format(done.elapsedMs / 1000)
    end
    local usage = type(done.usage) == 'table' and done.usage or nil
    if type(done.spent) == 'string' and done.spent ~= '' then
      parts[#parts + 1] = done.spent -- the server's line: tokens (cached) and cost
    elseif usage and type(usage.total_tokens or usage.totalTokens) == 'number' then
      parts[#parts + 1] = tostring(usage.total_tokens or usage.totalTokens) .. ' tokens'
    end
  elseif answer.final then
    parts[#parts + 1] = answer.partial and 'still writing…' or 'done'
  else
    parts[#parts + 1] = answer.status or 'thinking…'
  end
  return ' ' .. table.concat(parts, ' · ') .. ' '
end

---@param answer kimi.Answer
---@return string[] lines, integer reasoning_lines
local function buffer_lines(answer)
  local body, reasoning = texts(answer)
  local lines = {}
  if reasoning ~= '' then
    for _, l in ipairs(vim.split(vim.trim(reasoning), '\n', { plain = true })) do
      lines[#lines + 1] = l == '' and '>' or ('> ' .. l)
    end
  end
  local folded = #lines
  if folded > 0 then
    lines[#lines + 1] = ''
  end
  if body == '' and answer.done and answer.done.error then
    body = '**Error:** ' .. tostring(type(answer.done.error) == 'table' and answer.done.error.message or answer.done.error)
  end
  vim.list_extend(lines, vim.split(body, '\n', { plain = true }))
  return lines, folded
end

--- Keep the fold's closed line short and clear.
function M.foldtext()
  local n = vim.v.foldend - vim.v.foldstart + 1
  return ('> reasoning… (%d line%s, r to show)'):format(n, n == 1 and '' or 's')
end

---@param lnum integer
function M.foldexpr(lnum)
  return lnum <= (vim.b.kimi_reasoning_lines or 0) and '1' or '0'
end

local function max_height()
  local h = M.options.max_height
  if h < 1 then
    h = math.floor(vim.o.lines * h)
  end
  return math.max(3, h)
end

---@param answer kimi.Answer
local function close(answer)
  answer.closed = true
  if answer.win and api.nvim_win_is_valid(answer.win) then
    api.nvim_win_close(answer.win, true)
  end
  answer.win = nil
end

---@param answer kimi.Answer
local function cancel(answer)
  local client = vim.lsp.get_client_by_id(answer.client_id)
  if client and answer.request_id ~= nil and not answer.done and not answer.final then
    client:exec_cmd(
      { title = 'cancel', command = 'kimi.cancel', arguments = { { requestId = answer.request_id } } },
      { bufnr = answer.buf },
      function() end -- the float's footer says "cancelled" when the server's `done` arrives
    )
  end
end

function M.toggle_reasoning()
  if vim.b.kimi_reasoning_lines and vim.b.kimi_reasoning_lines > 0 then
    vim.cmd(vim.fn.foldclosed(1) == -1 and '1foldclose' or '1foldopen')
  end
end

---@param answer kimi.Answer
local function open(answer)
  if shown and shown ~= answer then
    close(shown)
  end
  shown = answer
  local buf = api.nvim_create_buf(false, true)
  answer.buf = buf
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].filetype = 'markdown'
  vim.b[buf].kimi_reasoning_lines = 0

  local width = math.max(20, math.min(M.options.max_width, vim.o.columns - 4))
  local cfg = vim.lsp.util.make_floating_popup_options(width, max_height(), {
    border = border(),
    title = ' ' .. answer.title .. ' ',
    title_pos = 'left',
  })
  answer.max_height = math.max(1, cfg.height)
  cfg.height = 1
  cfg.focusable = true
  answer.framed = cfg.border ~= 'none' and cfg.border ~= '' -- a title and footer need a border
  if answer.framed then
    cfg.footer = footer(answer)
    cfg.footer_pos = 'right'
  else
    cfg.title, cfg.title_pos = nil, nil
  end
  answer.win = api.nvim_open_win(buf, M.options.enter, cfg)
  local wo = vim.wo[answer.win][0]
  wo.wrap = true
  wo.linebreak = true
  wo.foldmethod = 'expr'
  wo.foldexpr = "v:lua.require'kimi.float'.foldexpr(v:lnum)"
  wo.foldtext = "v:lua.require'kimi.float'.foldtext()"
  wo.foldlevel = 0
  wo.foldminlines = 0
  wo.foldenable = true
  wo.fillchars = 'fold: ,eob: '
  wo.conceallevel = 2 -- render **bold** and `code` like the LSP hover float does
  wo.concealcursor = 'n'
  -- Highlight with the bundled markdown parser when there is one (as hover does), else :syntax.
  if not pcall(vim.treesitter.start, buf, 'markdown') then
    vim.bo[buf].syntax = 'markdown'
  end

  local function map(lhs, rhs, desc)
    vim.keymap.set('n', lhs, rhs, { buffer = buf, nowait = true, silent = true, desc = desc })
  end
  map('q', function()
    close(answer)
  end, 'Kimi: close')
  map('r', M.toggle_reasoning, 'Kimi: show/hide the reasoning')
  map('<C-c>', function()
    cancel(answer)
  end, 'Kimi: cancel this request')
  api.nvim_create_autocmd('WinClosed', {
    pattern = tostring(answer.win),
    once = true,
    callback = function()
      answer.closed = true
      answer.win = nil
    end,
  })
end

---@param answer kimi.Answer
local function render(answer)
  answer.pending = false
  local win, buf = answer.win, answer.buf
  if answer.closed or not (win and api.nvim_win_is_valid(win)) or not (buf and api.nvim_buf_is_valid(buf)) then
    return
  end
  local lines, folded = buffer_lines(answer)
  -- Follow the tail while the cursor sits on the last line (as it does at first).
  local cursor = api.nvim_win_get_cursor(win)
  local follow = cursor[1] >= api.nvim_buf_line_count(buf) and not answer.final
  vim.bo[buf].modifiable = true
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].modified = false
  vim.b[buf].kimi_reasoning_lines = folded

  local height = api.nvim_win_text_height(win, {}).all
  api.nvim_win_set_config(win, {
    height = math.max(1, math.min(height, answer.max_height)),
    footer = answer.framed and footer(answer) or nil,
    footer_pos = answer.framed and 'right' or nil,
  })
  if follow then
    api.nvim_win_set_cursor(win, { #lines, 0 })
  end
end

---@param answer kimi.Answer
local function schedule_render(answer)
  if not answer.pending then
    answer.pending = true
    vim.schedule(function()
      render(answer)
    end)
  end
end

--- A new answer, registered and shown in its float.
---@return table
local function new_answer(k, client_id, request_id, title, model)
  local answer = {
    key = k,
    client_id = client_id,
    request_id = request_id,
    title = title,
    model = model,
    reasoning = {},
    content = {},
    closed = false,
    pending = false,
  }
  answers[k] = answer
  open(answer)
  return answer
end

--- Handler for the `kimi/stream` notification (registered in lsp/kimi.lua).
---@param params table {requestId, kind, ...}
---@param ctx lsp.HandlerContext
function M.on_stream(_, params, ctx)
  if type(params) ~= 'table' then
    return
  end
  local k = key(ctx.client_id, params.requestId)
  local kind = params.kind
  if kind == 'start' or kind == 'done' then
    require('kimi.codelens').on_stream(params, ctx) -- refreshes the buffer's lenses when done
  end
  if kind == 'done' then
    require('kimi.util').remember_thread(params.threadId, ctx.client_id)
  end
  -- A follow-up sent from a :KimiChat buffer streams into that buffer, not into a float.
  local chat = package.loaded['kimi.chat']
  if chat and chat.on_stream(params, ctx) then
    return
  end
  if kind == 'start' then
    if params.output ~= 'show' then -- the action's output kind decides: the others edit the buffer
      edits[k] = type(params.title) == 'string' and params.title or tostring(params.action or 'answer')
      return
    end
    render(new_answer(k, ctx.client_id, params.requestId, params.title or ('Kimi: ' .. tostring(params.action)),
      params.model))
    return
  end
  if kind == 'done' and edits[k] then
    M.edit_done(edits[k], params)
    edits[k] = nil
    return
  end
  local answer = answers[k]
  if not answer then
    return
  end
  if kind == 'content' and type(params.text) == 'string' then
    table.insert(answer.content, params.text)
  elseif kind == 'reasoning' and type(params.text) == 'string' then
    table.insert(answer.reasoning, params.text)
  elseif kind == 'status' then
    answer.status = params.text
  elseif kind == 'done' then
    answer.done = params
  else
    return
  end
  schedule_render(answer)
end

--- An edit (no float) ended: echo what it used and cost, the server's `spent` line
--- ("Refactor · 1,234 tokens (800 cached) · $0.0012"). Failures and cancellations are reported
--- elsewhere (the server's message, :KimiCancel).
---@param title string
---@param done table the `done` notification
function M.edit_done(title, done)
  local failed = done.error ~= nil and done.error ~= vim.NIL
  if failed or done.cancelled == true or type(done.spent) ~= 'string' or done.spent == '' then
    return
  end
  local what = title:gsub('^Kimi:%s*', '')
  require('kimi.util').notify(what .. ' · ' .. done.spent)
end

--- The result of an action command arrived. An answer (`{requestId, text, reasoning, model}`) is
--- shown in the float it streamed into, or in a new one when nothing streamed (a custom action).
---@param result table
---@param ctx lsp.HandlerContext
function M.finish(result, ctx)
  require('kimi.util').remember_thread(result.threadId, ctx.client_id)
  local k = key(ctx.client_id, result.requestId)
  local answer = answers[k]
  if result.output ~= 'show' or type(result.text) ~= 'string' or (answer and answer.closed) then
    -- A failure or a cancellation, or the user closed the float. The float normally learnt about
    -- the first two from `done` already; if that never came, say it now.
    if answer and not answer.closed and not answer.done then
      answer.done = { cancelled = result.cancelled, error = result.error or (not result.cancelled and 'no answer') }
      render(answer)
    end
    answers[k] = nil
    return
  end
  if not answer then
    answer = new_answer(k, ctx.client_id, result.requestId, 'Kimi', nil)
  end
  answer.final = result.text
  answer.model = result.model or answer.model
  if type(result.reasoning) == 'string' and result.reasoning ~= '' then
    answer.reasoning = { result.reasoning }
  end
  render(answer)
  answers[k] = nil -- nothing more comes for it; the float keeps its own reference
end

--- Show a kept explanation, the result of `kimi.showExplanation` (`{text, model, title, done}`),
--- in the float, as it looked when it streamed (without the reasoning, which is not kept).
---@param result {text: string, model: string?, title: string?, done: boolean?}
---@param ctx lsp.HandlerContext
function M.show(result, ctx)
  local k = 'show:' .. tostring(ctx.client_id)
  local answer = new_answer(k, ctx.client_id, nil, result.title or 'Kimi', result.model)
  answers[answer.key] = nil -- nothing streams into it
  answer.final = result.text
  answer.partial = result.done == false
  render(answer)
end

--- The answer in the float, for scripts and tests: `{win, buf, body, reasoning}` or nil.
---@return {win: integer?, buf: integer?, body: string, reasoning: string, closed: boolean}?
function M.current()
  if not shown then
    return nil
  end
  local body, reasoning = texts(shown)
  return { win = shown.win, buf = shown.buf, body = body, reasoning = reasoning, closed = shown.closed }
end

--- Close the float, if any.
function M.close()
  if shown then
    close(shown)
  end
end

return M
