--- Proposals: an edit (refactor, fix, docs, …) drawn in its buffer for review instead of applied at once
--- (docs/protocol.md, "Proposals"). The server owns them: it sends `kimi/proposal` whenever one is made,
--- refined, goes stale or ends, applies an accept itself with one `workspace/applyEdit` (one undo step) and
--- moves the hunks over the user's typing. The plugin only draws and forwards:
---
--- - the lines a hunk removes are highlighted with |hl-DiffDelete| (to the window's edge), the lines it
---   adds are virtual lines in |hl-DiffAdd| below them (above the line, for an insertion);
--- - the first hunk's line ends with a header: "Kimi: Refactor 1/2 · ga accept · gx reject · gR refine";
---   the others with "Kimi 2/2";
--- - `:KimiAccept`, `:KimiReject`, `:KimiRefine` and the buffer-local keymaps below forward to
---   `kimi.acceptProposal`, `kimi.rejectProposal` and `kimi.refineProposal`.
---
--- The extmarks (namespace `kimi.proposal`) move with the text as the user types; every notification draws
--- the proposal again from the server's ranges.
local api = vim.api
local util = require('kimi.util')

local M = {}

M.ns = api.nvim_create_namespace('kimi.proposal')

--- Default buffer-local keymaps while a buffer shows a proposal (`setup({ keymaps = {...} })`; `false`
--- turns one, or all, off).
M.default_keymaps = {
  accept = 'ga', -- the hunk under the cursor, else the whole proposal (:KimiAccept)
  accept_all = 'gA', -- every proposal of the buffer (:KimiAccept!)
  reject = 'gx', -- as accept (:KimiReject)
  reject_all = 'gX', -- (:KimiReject!)
  refine = 'gR', -- ask for an instruction (:KimiRefine)
  next = ']k', -- the next hunk
  prev = '[k', -- the previous hunk
}

---@type table<string, string|false>|false
M.keymaps = vim.deepcopy(M.default_keymaps)

--- `setup({ keymaps = ... })`: false for none, or a table merged over the defaults (a key set to false
--- is not mapped).
---@param keymaps table|boolean|nil
function M.set_keymaps(keymaps)
  if keymaps == false then
    M.keymaps = false
  elseif type(keymaps) == 'table' then
    M.keymaps = vim.tbl_extend('force', vim.deepcopy(M.default_keymaps), keymaps)
  else
    M.keymaps = vim.deepcopy(M.default_keymaps)
  end
  for bufnr in pairs(M._mapped) do
    M._unmap(bufnr)
  end
  for bufnr in pairs(M._buffers()) do
    M._map(bufnr)
  end
end

---@class kimi.Hunk
---@field id string
---@field old string
---@field new string
---@field del integer? extmark over the removed lines
---@field add integer? extmark carrying the added lines (virt_lines)
---@field anchor integer? the extmark whose row locates an insertion

---@class kimi.Proposal
---@field key string
---@field id string
---@field client_id integer
---@field uri string
---@field bufnr integer
---@field state string
---@field title string
---@field action string?
---@field model string?
---@field hunks kimi.Hunk[]
---@field range integer? extmark over the request's selection
---@field heads integer[] extmarks of the header texts

---@type table<string, kimi.Proposal> 'client_id:proposalId' -> proposal
local proposals = {}
---@type table<string, true> proposals whose "stale" message was shown
local stale_told = {}
---@type table<integer, true> buffers being re-synchronised with kimi.listProposals
local syncing = {}
---@type table<string, true> proposals that ended: ids are never reused, so nothing may bring one back
local ended = {}
---@type table<string, integer> proposals with a kimi.acceptProposal on its way (how many)
local accepting = {}
---@type table<string, integer> when each proposal's last notification came (a count of notifications)
local heard = {}
local notifications = 0

---@param client_id integer
---@param pid string
local function key(client_id, pid)
  return tostring(client_id) .. ':' .. tostring(pid)
end

---@param client_id integer
---@param uri string
---@return integer?
local function buffer_of(client_id, uri)
  local client = vim.lsp.get_client_by_id(client_id)
  for bufnr in pairs(client and client.attached_buffers or {}) do
    if vim.uri_from_bufnr(bufnr) == uri then
      return bufnr
    end
  end
end

--- The live proposals of `bufnr` (or of every buffer), in the order of their first hunk.
---@param bufnr integer?
---@return kimi.Proposal[]
function M.list(bufnr)
  if bufnr == 0 then
    bufnr = api.nvim_get_current_buf()
  end
  local list = {}
  for _, p in pairs(proposals) do
    if bufnr == nil or p.bufnr == bufnr then
      list[#list + 1] = p
    end
  end
  table.sort(list, function(a, b)
    local ra, rb = M.rows(a)[1], M.rows(b)[1]
    ra, rb = ra and ra.first or math.huge, rb and rb.first or math.huge
    if ra ~= rb then
      return ra < rb
    end
    return a.key < b.key
  end)
  return list
end

--- Buffers that show a proposal.
---@return table<integer, true>
function M._buffers()
  local set = {}
  for _, p in pairs(proposals) do
    set[p.bufnr] = true
  end
  return set
end

---@param bufnr integer
---@param id integer?
---@return {row: integer, col: integer, end_row: integer, end_col: integer}?
local function mark(bufnr, id)
  if not id then
    return nil
  end
  local m = api.nvim_buf_get_extmark_by_id(bufnr, M.ns, id, { details = true })
  if not m[1] then
    return nil
  end
  local d = m[3] or {}
  return { row = m[1], col = m[2], end_row = d.end_row or m[1], end_col = d.end_col or m[2] }
end

--- The last row a range covers: a range that ends at column 0 of a later line stops on the line before.
local function last_row(m)
  if m.end_row > m.row and m.end_col == 0 then
    return m.end_row - 1
  end
  return m.end_row
end

--- Where each hunk of `p` is now (the extmarks follow the typing): 0-based rows `first..last` it removes,
--- or, for an insertion, the row its lines are drawn at (`insert = true`). In document order.
---@param p kimi.Proposal
---@return {hunk: kimi.Hunk, first: integer, last: integer, insert: boolean}[]
function M.rows(p)
  local out = {}
  if not api.nvim_buf_is_valid(p.bufnr) then
    return out
  end
  for _, h in ipairs(p.hunks) do
    local del = mark(p.bufnr, h.del)
    if del then
      out[#out + 1] = { hunk = h, first = del.row, last = last_row(del), insert = false }
    else
      local a = mark(p.bufnr, h.anchor)
      if a then
        out[#out + 1] = { hunk = h, first = a.row, last = a.row, insert = true }
      end
    end
  end
  table.sort(out, function(x, y)
    return x.first < y.first
  end)
  return out
end

--- The 0-based rows the request's selection covers now, or nil.
---@param p kimi.Proposal
---@return integer?, integer?
local function range_rows(p)
  local m = api.nvim_buf_is_valid(p.bufnr) and mark(p.bufnr, p.range) or nil
  if not m then
    return nil
  end
  return m.row, last_row(m)
end

---@param p kimi.Proposal
local function clear_marks(p)
  if not api.nvim_buf_is_valid(p.bufnr) then
    return
  end
  local ids = { p.range }
  vim.list_extend(ids, p.heads or {})
  for _, h in ipairs(p.hunks) do
    ids[#ids + 1] = h.del
    ids[#ids + 1] = h.add
    ids[#ids + 1] = h.anchor
  end
  for _, id in pairs(ids) do
    pcall(api.nvim_buf_del_extmark, p.bufnr, M.ns, id)
  end
  p.range, p.heads = nil, {}
  for _, h in ipairs(p.hunks) do
    h.del, h.add, h.anchor = nil, nil, nil
  end
end

--- An LSP position as a (row, col) in `bufnr`, clamped to the buffer (past the last line: its end).
---@return integer row, integer col
local function position(bufnr, pos, encoding)
  local count = api.nvim_buf_line_count(bufnr)
  local row = math.max(0, math.floor(tonumber(pos.line) or 0))
  if row >= count then
    local last = api.nvim_buf_get_lines(bufnr, count - 1, count, false)[1] or ''
    return count - 1, #last
  end
  local character = math.max(0, math.floor(tonumber(pos.character) or 0))
  if character == 0 then
    return row, 0
  end
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  return row, ok and math.min(col, #line) or #line
end

--- A line of added text as it displays: tabs expanded (virtual text shows no tabs).
---@param line string
---@param tabstop integer
local function expand_tabs(line, tabstop)
  if not line:find('\t', 1, true) then
    return line
  end
  local out, width = {}, 0
  for ch in line:gmatch('[^\128-\191][\128-\191]*') do
    if ch == '\t' then
      local n = tabstop - (width % tabstop)
      out[#out + 1] = (' '):rep(n)
      width = width + n
    else
      out[#out + 1] = ch
      width = width + vim.fn.strdisplaywidth(ch)
    end
  end
  return table.concat(out)
end

--- The lines of `text` (a final newline ends the last line, it does not start one more).
---@param text string
---@return string[]
local function lines_of(text)
  if text == '' then
    return {}
  end
  local lines = vim.split(text, '\r?\n', { plain = false })
  if lines[#lines] == '' then
    lines[#lines] = nil
  end
  return lines
end

---@param lhs string|false|nil
local function key_hint(lhs, command)
  if M.keymaps and type(lhs) == 'string' and lhs ~= '' then
    return lhs
  end
  return command
end

--- The header's chunks for hunk `i` of `n`.
---@param p kimi.Proposal
local function header(p, i, n)
  local km = M.keymaps or {}
  local title = (p.title ~= '' and p.title or 'Kimi')
  if p.state == 'refining' then
    return {
      { ' ' .. title .. ' ', 'DiffText' },
      { ' refining… (the old proposal is shown until it is ready)', 'Comment' },
    }
  end
  if i > 1 then
    return { { (' Kimi %d/%d '):format(i, n), 'DiffText' } }
  end
  local hints = {
    key_hint(km.accept, ':KimiAccept') .. ' accept',
    key_hint(km.reject, ':KimiReject') .. ' reject',
    key_hint(km.refine, ':KimiRefine') .. ' refine',
  }
  if n > 1 and M.keymaps and type(km.next) == 'string' and km.next ~= '' then
    hints[#hints + 1] = km.next .. ' next'
  end
  return {
    { (' %s%s '):format(title, n > 1 and (' 1/' .. n) or ''), 'DiffText' },
    { ' ' .. table.concat(hints, ' · '), 'Comment' },
  }
end

--- Draw `p`'s headers on the rows where its hunks are now.
---@param p kimi.Proposal
local function draw_headers(p)
  for _, id in ipairs(p.heads or {}) do
    pcall(api.nvim_buf_del_extmark, p.bufnr, M.ns, id)
  end
  p.heads = {}
  local rows = M.rows(p)
  for i, r in ipairs(rows) do
    p.heads[#p.heads + 1] = api.nvim_buf_set_extmark(p.bufnr, M.ns, r.first, 0, {
      virt_text = header(p, i, #rows),
      virt_text_pos = 'eol',
      hl_mode = 'combine',
      priority = 5000,
    })
  end
end

--- Draw `p` from the server's hunks (`{id, range, oldText, newText}`, ranges in the document as it is).
---@param p kimi.Proposal
---@param hunks table[]
---@param range table? the request's selection
---@param encoding string
local function draw(p, hunks, range, encoding)
  clear_marks(p)
  local bufnr = p.bufnr
  local count = api.nvim_buf_line_count(bufnr)
  local tabstop = vim.bo[bufnr].tabstop
  local width = math.max(vim.o.columns, 20)
  p.hunks = {}
  local first_lines = 0 -- virtual lines above the buffer's first line
  for _, h in ipairs(hunks) do
    local hunk = { id = h.id, old = h.oldText or '', new = h.newText or '' } ---@type kimi.Hunk
    local sr, sc = position(bufnr, h.range.start, encoding)
    local er, ec = position(bufnr, h.range['end'], encoding)
    local added = {}
    for _, l in ipairs(lines_of(hunk.new)) do
      local text = expand_tabs(l, tabstop)
      local pad = width - vim.fn.strdisplaywidth(text)
      added[#added + 1] = { { text .. (pad > 0 and (' '):rep(pad) or ''), 'DiffAdd' } }
    end
    local anchor_row, above
    if sr ~= er or sc ~= ec then
      hunk.del = api.nvim_buf_set_extmark(bufnr, M.ns, sr, sc, {
        end_row = er,
        end_col = ec,
        hl_group = 'DiffDelete',
        hl_eol = true,
        priority = 4500,
        strict = false,
      })
      anchor_row = (er > sr and ec == 0) and er - 1 or er
      above = false
    elseif sr < count and not (sr == count - 1 and sc > 0) then
      anchor_row, above = sr, true -- an insertion before line `sr`: its lines are drawn above it
    else
      anchor_row, above = count - 1, false -- at the end of the buffer: below its last line
    end
    if not hunk.del then
      hunk.anchor = api.nvim_buf_set_extmark(bufnr, M.ns, anchor_row, 0, { strict = false })
    end
    if #added > 0 then
      if above and anchor_row == 0 then
        first_lines = #added
      end
      hunk.add = api.nvim_buf_set_extmark(bufnr, M.ns, anchor_row, 0, {
        virt_lines = added,
        virt_lines_above = above,
        strict = false,
      })
    end
    p.hunks[#p.hunks + 1] = hunk
  end
  if first_lines > 0 then
    -- Virtual lines above the first line show only when the window is scrolled to them.
    for _, win in ipairs(vim.fn.win_findbuf(bufnr)) do
      api.nvim_win_call(win, function()
        local view = vim.fn.winsaveview()
        if view.topline == 1 and (view.topfill or 0) < first_lines then
          vim.fn.winrestview({ topfill = first_lines })
        end
      end)
    end
  end
  if type(range) == 'table' and range.start then
    local sr, sc = position(bufnr, range.start, encoding)
    local er, ec = position(bufnr, range['end'], encoding)
    p.range = api.nvim_buf_set_extmark(bufnr, M.ns, sr, sc, { end_row = er, end_col = ec, strict = false })
  end
  draw_headers(p)
end

-- ------------------------------------------------------------------------------------------- keymaps

---@type table<integer, {mode: string, lhs: string, saved: table?}[]> buffers with our keymaps
M._mapped = {}

---@param bufnr integer
function M._unmap(bufnr)
  for _, m in ipairs(M._mapped[bufnr] or {}) do
    pcall(vim.keymap.del, m.mode, m.lhs, { buffer = bufnr })
    if m.saved and api.nvim_buf_is_valid(bufnr) then
      api.nvim_buf_call(bufnr, function()
        vim.fn.mapset(m.mode, false, m.saved) -- the user's own buffer-local mapping comes back
      end)
    end
  end
  M._mapped[bufnr] = nil
end

---@param bufnr integer
function M._map(bufnr)
  if M._mapped[bufnr] or not M.keymaps or not api.nvim_buf_is_valid(bufnr) then
    return
  end
  local km = M.keymaps
  local maps = {}
  local function map(modes, lhs, rhs, desc)
    if type(lhs) ~= 'string' or lhs == '' then
      return
    end
    for _, mode in ipairs(modes) do
      local saved = api.nvim_buf_call(bufnr, function()
        return vim.fn.maparg(lhs, mode, false, true)
      end)
      maps[#maps + 1] = { mode = mode, lhs = lhs, saved = (saved.buffer == 1) and saved or nil }
      vim.keymap.set(mode, lhs, rhs, { buffer = bufnr, silent = true, nowait = true, desc = desc })
    end
  end
  map({ 'n' }, km.accept, '<Cmd>KimiAccept<CR>', 'Kimi: accept the hunk under the cursor (else the proposal)')
  map({ 'x' }, km.accept, ':KimiAccept<CR>', 'Kimi: accept the hunks on the selected lines')
  map({ 'n' }, km.accept_all, '<Cmd>KimiAccept!<CR>', "Kimi: accept every proposal of the buffer")
  map({ 'n' }, km.reject, '<Cmd>KimiReject<CR>', 'Kimi: reject the hunk under the cursor (else the proposal)')
  map({ 'x' }, km.reject, ':KimiReject<CR>', 'Kimi: reject the hunks on the selected lines')
  map({ 'n' }, km.reject_all, '<Cmd>KimiReject!<CR>', "Kimi: reject every proposal of the buffer")
  map({ 'n' }, km.refine, '<Cmd>KimiRefine<CR>', 'Kimi: refine the proposal with an instruction')
  map({ 'n', 'x' }, km.next, function()
    M.jump(vim.v.count1)
  end, 'Kimi: next hunk')
  map({ 'n', 'x' }, km.prev, function()
    M.jump(-vim.v.count1)
  end, 'Kimi: previous hunk')
  M._mapped[bufnr] = maps
end

--- Map the keys of buffers that show a proposal, unmap those that show none any more.
local function update_keymaps()
  local shown = M._buffers()
  for bufnr in pairs(M._mapped) do
    if not shown[bufnr] then
      M._unmap(bufnr)
    end
  end
  for bufnr in pairs(shown) do
    M._map(bufnr)
  end
end

-- ------------------------------------------------------------------------------------- notifications

---@param p kimi.Proposal
local function forget(p)
  clear_marks(p)
  proposals[p.key] = nil
end

local LIVE = { ready = true, refining = true }

---@param bufnr integer
---@param client vim.lsp.Client
local function resync(bufnr, client)
  if syncing[bufnr] then
    return
  end
  syncing[bufnr] = true
  local asked = notifications
  local uri = vim.uri_from_bufnr(bufnr)
  -- A request flushes the buffer's pending changes first, so the answer is for the text as it is.
  client:request('workspace/executeCommand', {
    command = 'kimi.listProposals',
    arguments = { { uri = uri } },
  }, function(err, result, ctx)
    syncing[bufnr] = nil
    if err or type(result) ~= 'table' or type(result.proposals) ~= 'table' then
      return
    end
    local live = {}
    for _, params in ipairs(result.proposals) do
      local k = key(ctx.client_id, params.proposalId)
      live[k] = true
      -- A notification that came after the question is newer than this answer.
      if (heard[k] or 0) <= asked then
        M.on_proposal(nil, params, ctx, true)
      end
    end
    for k, p in pairs(proposals) do
      if p.bufnr == bufnr and p.client_id == ctx.client_id and not live[k] and (heard[k] or 0) <= asked then
        forget(p)
      end
    end
    update_keymaps()
  end, bufnr)
end

--- Handler of the `kimi/proposal` notification (registered in lsp/kimi.lua).
---@param params table the proposal (docs/protocol.md)
---@param ctx lsp.HandlerContext
---@param synced? boolean from kimi.listProposals: do not ask again
function M.on_proposal(_, params, ctx, synced)
  if type(params) ~= 'table' or params.proposalId == nil then
    return
  end
  local k = key(ctx.client_id, params.proposalId)
  if ended[k] then
    return
  end
  if not synced then
    notifications = notifications + 1
    heard[k] = notifications
  end
  local p = proposals[k]
  local state = params.state
  if not LIVE[state] then
    ended[k] = true
    heard[k] = nil
    if p then
      forget(p)
    end
    -- While an accept of it is on its way, the accept's result speaks: the server may see the editor's
    -- edit half applied (Neovim sends a multi-hunk edit as several changes) and call it stale.
    if state == 'stale' and not stale_told[k] and not accepting[k] then
      stale_told[k] = true
      local title = type(params.title) == 'string' and params.title or 'Kimi'
      local why = type(params.message) == 'string' and params.message ~= '' and params.message
        or 'the code it would change was edited'
      util.notify(
        ('%s proposal withdrawn: %s; run the action again'):format((title:gsub('^Kimi:%s*', '')), why),
        vim.log.levels.WARN
      )
    end
    update_keymaps()
    return
  end
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  local bufnr = p and p.bufnr or buffer_of(ctx.client_id, params.uri)
  if not client or not bufnr or not api.nvim_buf_is_loaded(bufnr) then
    return
  end
  if not p then
    p = {
      key = k,
      id = params.proposalId,
      client_id = ctx.client_id,
      uri = params.uri,
      bufnr = bufnr,
      hunks = {},
      heads = {},
    }
    proposals[k] = p
  end
  p.state = state
  p.title = type(params.title) == 'string' and params.title or 'Kimi'
  p.action, p.model = params.action, params.model
  local hunks = type(params.hunks) == 'table' and params.hunks or {}
  local current = vim.lsp.util.buf_versions[bufnr]
  local in_step = params.version == vim.NIL or params.version == nil or params.version == current
  if #hunks > 0 and (in_step or #p.hunks == 0) then
    draw(p, hunks, params.range ~= vim.NIL and params.range or nil, client.offset_encoding)
  else
    -- Ranges for another version of the text (or none: the server has not seen the latest typing yet):
    -- the extmarks drawn before have moved with the text; only the header changes.
    draw_headers(p)
  end
  if not in_step or #hunks == 0 then
    if not synced then
      vim.schedule(function()
        resync(bufnr, client)
      end)
    end
  end
  if #p.hunks == 0 and #hunks == 0 and synced then
    forget(p) -- nothing to show for it
  end
  update_keymaps()
end

-- ------------------------------------------------------------------------------------------ commands

--- The proposal and the hunks the cursor (or the lines `line1..line2`, 1-based) is on.
---@param bufnr integer
---@param opts {bang: boolean?, range: integer?, line1: integer?, line2: integer?}
---@return {proposal: kimi.Proposal, hunks: string[]?}[]? targets, string? why not
function M.targets(bufnr, opts)
  local list = M.list(bufnr)
  if #list == 0 then
    return nil, 'no Kimi proposal in this buffer'
  end
  if opts.bang then
    local all = {}
    for _, p in ipairs(list) do
      all[#all + 1] = { proposal = p }
    end
    return all
  end
  local first, last
  if opts.range and opts.range > 0 then
    first, last = opts.line1 - 1, opts.line2 - 1
  else
    first = api.nvim_win_get_cursor(0)[1] - 1
    last = first
  end
  local picked = {}
  for _, p in ipairs(list) do
    local ids = {}
    for _, r in ipairs(M.rows(p)) do
      if r.first <= last and r.last >= first then
        ids[#ids + 1] = r.hunk.id
      end
    end
    if #ids > 0 then
      picked[#picked + 1] = { proposal = p, hunks = ids }
    end
  end
  -- A removed line wins over an insertion drawn next to it (on one line, with no range).
  if #picked > 1 and first == last then
    picked = { picked[1] }
  end
  if #picked > 0 then
    return picked
  end
  for _, p in ipairs(list) do
    local s, e = range_rows(p)
    if s and s <= last and e >= first then
      return { { proposal = p } }
    end
  end
  if #list == 1 then
    return { { proposal = list[1] } }
  end
  local next_key = M.keymaps and M.keymaps.next
  local hint = type(next_key) == 'string' and next_key ~= '' and (' (%s jumps to the next hunk)'):format(next_key) or ''
  return nil, ('%d Kimi proposals in this buffer: put the cursor on one%s, or use !'):format(#list, hint)
end

---@param p kimi.Proposal
---@return vim.lsp.Client?
local function client_of(p)
  local client = vim.lsp.get_client_by_id(p.client_id)
  if not client then
    util.notify('the kimi-lsp client that made this proposal is gone', vim.log.levels.WARN)
  end
  return client
end

--- Run `command` on each target in turn (one edit after the other, so each is one undo step on the
--- text the previous one left).
---@param command string
---@param targets {proposal: kimi.Proposal, hunks: string[]?}[]
---@param on_result fun(t: table, result: table)
local function each(command, targets, on_result)
  local i = 0
  local function step()
    i = i + 1
    local t = targets[i]
    if not t then
      return
    end
    local client = client_of(t.proposal)
    if not client then
      return
    end
    local args = { proposalId = t.proposal.id, hunks = t.hunks }
    local k = t.proposal.key
    local counted = command == 'kimi.acceptProposal'
    if counted then
      accepting[k] = (accepting[k] or 0) + 1
    end
    local function done()
      if counted then
        accepting[k] = (accepting[k] or 1) > 1 and accepting[k] - 1 or nil
      end
    end
    util.exec(client, t.proposal.bufnr, command, args, function(result)
      done()
      if type(result) == 'table' then
        on_result(t, result)
      end
      step()
    end, done) -- after an error the others are not tried
  end
  step()
end

--- Remove hunks the server accepted or rejected at once (its notification follows and redraws).
---@param p kimi.Proposal
---@param ids any
local function drop_hunks(p, ids)
  if type(ids) ~= 'table' or proposals[p.key] ~= p then
    return
  end
  local gone = {}
  for _, id in ipairs(ids) do
    gone[id] = true
  end
  local keep = {}
  for _, h in ipairs(p.hunks) do
    if gone[h.id] then
      for _, m in ipairs({ h.del, h.add, h.anchor }) do
        pcall(api.nvim_buf_del_extmark, p.bufnr, M.ns, m)
      end
    else
      keep[#keep + 1] = h
    end
  end
  p.hunks = keep
  if #keep == 0 then
    forget(p)
  else
    draw_headers(p)
  end
  update_keymaps()
end

---@param command string
---@param field string the result's list of hunks that are done
---@return fun(opts: table)
local function act(command, field)
  return function(opts)
    local bufnr = api.nvim_get_current_buf()
    local targets, why = M.targets(bufnr, opts or {})
    if not targets then
      util.notify(why or 'nothing to do', vim.log.levels.WARN)
      return
    end
    each(command, targets, function(t, result)
      -- A refused accept is explained by the server (window/showMessage); nothing changed.
      if command ~= 'kimi.acceptProposal' or result.applied then
        if type(result.remaining) == 'table' and #result.remaining == 0 then
          ended[t.proposal.key] = true -- it is over on the server
        end
        drop_hunks(t.proposal, result[field])
      end
    end)
  end
end

--- `:KimiAccept[!]`: the hunk under the cursor, the hunks on the lines of a range, else the whole
--- proposal the cursor is in (or the buffer's only one); with ! every proposal of the buffer.
M.accept = act('kimi.acceptProposal', 'hunks')

--- `:KimiReject[!]`: as |M.accept|; the buffer is left as it is.
M.reject = act('kimi.rejectProposal', 'rejected')

--- `:KimiRefine [instruction]`: the proposal under the cursor (or the buffer's only one) is asked again
--- with an instruction (prompted for when none is given); it streams like any request and is redrawn
--- when the new version is ready.
---@param opts table
function M.refine(opts)
  opts = opts or {}
  local bufnr = api.nvim_get_current_buf()
  local targets, why = M.targets(bufnr, { range = opts.range, line1 = opts.line1, line2 = opts.line2 })
  if not targets then
    util.notify(why or 'nothing to refine', vim.log.levels.WARN)
    return
  end
  local p = targets[1].proposal
  local function run(instruction)
    instruction = vim.trim(instruction or '')
    if instruction == '' then
      return
    end
    local client = client_of(p)
    if client then
      util.exec(client, bufnr, 'kimi.refineProposal', { proposalId = p.id, instruction = instruction })
    end
  end
  if opts.args and vim.trim(opts.args) ~= '' then
    run(opts.args)
  else
    vim.ui.input({ prompt = ('Refine %s: '):format(p.title:gsub('^Kimi:%s*', '')) }, function(input)
      if input ~= nil then
        run(input)
      end
    end)
  end
end

--- Move the cursor `n` hunks on (back when negative), over every proposal of the buffer; wraps around.
---@param n integer
function M.jump(n)
  local bufnr = api.nvim_get_current_buf()
  local starts, seen = {}, {}
  for _, p in ipairs(M.list(bufnr)) do
    for _, r in ipairs(M.rows(p)) do
      if not seen[r.first] then
        seen[r.first] = true
        starts[#starts + 1] = { row = r.first, insert = r.insert }
      end
    end
  end
  if #starts == 0 then
    util.notify('no Kimi hunk in this buffer', vim.log.levels.WARN)
    return
  end
  table.sort(starts, function(a, b)
    return a.row < b.row
  end)
  local row = api.nvim_win_get_cursor(0)[1] - 1
  local index -- the hunk at or before the cursor
  for i, s in ipairs(starts) do
    if s.row <= row then
      index = i
    end
  end
  local target
  if n > 0 then
    target = ((index or 0) + n - 1) % #starts + 1
  else
    local from = index or (#starts + 1)
    if index and starts[index].row < row then
      from = index + 1 -- inside a hunk, [k goes to its start first
    end
    target = (from + n - 1) % #starts + 1
  end
  local s = starts[target]
  if api.nvim_get_mode().mode == 'n' then
    vim.cmd("normal! m'") -- a jump: <C-o> comes back
  end
  local line = api.nvim_buf_get_lines(bufnr, s.row, s.row + 1, false)[1] or ''
  api.nvim_win_set_cursor(0, { s.row + 1, math.max(0, (line:find('%S') or 1) - 1) })
  if s.insert and s.row == 0 then
    vim.fn.winrestview({ topfill = 100 }) -- virtual lines above the first line show only when scrolled to
  end
end

--- For :checkhealth, scripts and tests: the live proposals with their hunks where they are now.
---@param bufnr integer?
function M.get(bufnr)
  local out = {}
  for _, p in ipairs(M.list(bufnr)) do
    local hunks = {}
    for _, r in ipairs(M.rows(p)) do
      hunks[#hunks + 1] = { id = r.hunk.id, first = r.first, last = r.last, insert = r.insert, new = r.hunk.new }
    end
    out[#out + 1] = { id = p.id, bufnr = p.bufnr, state = p.state, title = p.title, hunks = hunks }
  end
  return out
end

api.nvim_create_autocmd({ 'BufWipeout', 'BufUnload' }, {
  group = api.nvim_create_augroup('kimi.proposal', { clear = true }),
  desc = 'kimi: forget the proposals of a buffer that is gone',
  callback = function(ev)
    for _, p in pairs(proposals) do
      if p.bufnr == ev.buf then
        proposals[p.key] = nil
      end
    end
    M._mapped[ev.buf] = nil
  end,
})

return M
