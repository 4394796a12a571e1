-- Edits as proposals drawn in the buffer (docs/protocol.md, "Proposals"): a refactor is drawn with
-- extmarks and leaves the text alone; ]k moves between hunks; :KimiAccept! applies it in one undo
-- step; :KimiReject leaves the buffer byte-identical; :KimiRefine draws the new version; the
-- default keymaps accept / reject a hunk; typing inside a hunk makes it stale.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

local api = vim.api

--- The proposal extmarks of the buffer, in a JSON-friendly form.
local function marks(ns)
  local list = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(H.buf, ns, 0, -1, { details = true })) do
    local d = m[4]
    local item = { row = m[2], col = m[3], end_row = d.end_row, end_col = d.end_col, hl_group = d.hl_group }
    item.hl_eol = d.hl_eol
    if d.virt_lines then
      item.virt_lines, item.virt_lines_hl = {}, {}
      for _, vl in ipairs(d.virt_lines) do
        local text, hl = {}, nil
        for _, chunk in ipairs(vl) do
          text[#text + 1] = chunk[1]
          hl = hl or (type(chunk[2]) == 'table' and chunk[2][1] or chunk[2])
        end
        item.virt_lines[#item.virt_lines + 1] = (table.concat(text):gsub('%s+$', ''))
        item.virt_lines_hl[#item.virt_lines_hl + 1] = hl
      end
      item.virt_lines_above = d.virt_lines_above
    end
    if d.virt_text then
      local text = {}
      for _, chunk in ipairs(d.virt_text) do
        text[#text + 1] = chunk[1]
      end
      item.virt_text = table.concat(text)
    end
    list[#list + 1] = item
  end
  return list
end

--- The buffer-local keymaps of the plugin (not the python ftplugin's ]] [[ …).
local function buffer_maps()
  local found = {}
  for _, mode in ipairs({ 'n', 'x' }) do
    for _, m in ipairs(api.nvim_buf_get_keymap(H.buf, mode)) do
      if (m.desc or ''):find('^Kimi:') and not (m.desc or ''):find('ghost text', 1, true) then -- not the ghost text's keys
        found[#found + 1] = mode .. ' ' .. m.lhs
      end
    end
  end
  table.sort(found)
  return found
end

H.run(function(out)
  H.start()
  local proposal = require('kimi.proposal')
  local ns = api.nvim_get_namespaces()['kimi.proposal']
  local states = {}
  local on_proposal = proposal.on_proposal
  proposal.on_proposal = function(err, params, ctx, synced)
    if not synced then
      states[#states + 1] = params.state
    end
    return on_proposal(err, params, ctx, synced)
  end
  local original = H.lines()
  out.original = original

  local function shown(what, cond)
    return H.wait(20000, what, function()
      local list = proposal.get(H.buf)
      return #list > 0 and (not cond or cond(list[1])) and list[1]
    end)
  end
  local function none_left(what)
    H.wait(20000, what, function()
      return #proposal.get(H.buf) == 0
    end)
  end
  local function refactor(instruction)
    H.select_lines(2, 5)
    vim.cmd("'<,'>KimiRefactor " .. instruction)
    return shown('the proposal of ' .. instruction)
  end

  -- 1. A refactor is drawn, not applied.
  local tick = api.nvim_buf_get_var(H.buf, 'changedtick')
  out.first = refactor('rename total to acc')
  out.ns = ns
  out.marks = marks(ns)
  out.unchanged = vim.deep_equal(H.lines(), original)
  out.tick_unchanged = api.nvim_buf_get_var(H.buf, 'changedtick') == tick
  out.maps = buffer_maps()
  out.init_proposals = vim.lsp.get_clients({ name = 'kimi' })[1].config.init_options.proposals

  -- 2. ]k / [k move between the hunks (wrapping around).
  api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('normal ]k')
  out.next1 = api.nvim_win_get_cursor(0)
  vim.cmd('normal ]k')
  out.next2 = api.nvim_win_get_cursor(0)
  vim.cmd('normal ]k')
  out.next3 = api.nvim_win_get_cursor(0)
  vim.cmd('normal [k')
  out.prev1 = api.nvim_win_get_cursor(0)

  -- 3. :KimiAccept! applies every hunk as one edit; one :undo restores the text.
  vim.cmd('KimiAccept!')
  none_left('the accepted proposal to go')
  out.accepted = H.lines()
  out.marks_after_accept = #api.nvim_buf_get_extmarks(H.buf, ns, 0, -1, {})
  out.maps_after_accept = buffer_maps()
  vim.cmd('undo')
  out.undone = H.lines()

  -- 4. :KimiReject with the cursor in the proposal: the buffer is byte-identical.
  refactor('rename total to acc')
  tick = api.nvim_buf_get_var(H.buf, 'changedtick')
  api.nvim_win_set_cursor(0, { 3, 0 }) -- `for x in xs:`, inside the selection, on no hunk
  vim.cmd('KimiReject')
  none_left('the rejected proposal to go')
  out.rejected = H.lines()
  out.reject_tick_unchanged = api.nvim_buf_get_var(H.buf, 'changedtick') == tick
  out.marks_after_reject = #api.nvim_buf_get_extmarks(H.buf, ns, 0, -1, {})

  -- 5. :KimiRefine revises the proposal: "refining…" while it runs, then the new version is drawn.
  local refined_states_from = #states + 1
  refactor('rename total to acc')
  local headers = {}
  local draw_headers = proposal.on_proposal
  proposal.on_proposal = function(err, params, ctx, synced)
    local r = draw_headers(err, params, ctx, synced)
    if params.state == 'refining' then
      for _, m in ipairs(marks(ns)) do
        if m.virt_text then
          headers[#headers + 1] = m.virt_text
        end
      end
    end
    return r
  end
  vim.cmd('KimiRefine uppercase it')
  out.refined = shown('the refined proposal', function(p)
    return p.state == 'ready' and p.hunks[1] and p.hunks[1].new:find('ACC', 1, true)
  end)
  proposal.on_proposal = draw_headers
  out.refining_headers = headers
  out.refined_marks = marks(ns)
  out.refined_unchanged = vim.deep_equal(H.lines(), original)
  out.states = vim.list_slice(states, refined_states_from)
  vim.cmd('KimiReject!')
  none_left('the refined proposal to be rejected')

  -- 6. The default keymaps: ]k to the first hunk, `ga` accepts that hunk only, `gx` rejects the rest.
  refactor('rename total to acc')
  api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('normal ]k')
  out.ga_row = api.nvim_win_get_cursor(0)[1]
  vim.cmd('normal ga')
  H.wait(20000, 'the first hunk to be accepted', function()
    return H.lines()[2] == '    acc = 0'
  end)
  out.after_ga = H.lines()
  out.left_after_ga = shown('the rest of the proposal', function(p)
    return #p.hunks == 1
  end)
  out.marks_after_ga = marks(ns)
  vim.cmd('normal ]k')
  out.gx_row = api.nvim_win_get_cursor(0)[1]
  vim.cmd('normal gx')
  none_left('the rest to be rejected')
  out.after_gx = H.lines()
  out.maps_after_gx = buffer_maps()
  vim.cmd('undo')
  out.undone_ga = H.lines()

  -- 7. Typing above the proposal: the drawing moves with the text, and the accept lands where the hunks are now.
  refactor('rename total to acc')
  api.nvim_buf_set_lines(H.buf, 0, 0, false, { 'import os', '' })
  vim.o.undolevels = vim.o.undolevels -- end the undo step, as leaving insert mode does
  out.moved = proposal.get(H.buf)[1]
  vim.wait(300) -- the server hears of the typing (didChange) in its own time
  vim.cmd('KimiAccept!')
  none_left('the moved proposal to be accepted')
  out.after_moved_accept = H.lines()
  vim.cmd('undo')
  out.undone_moved = H.lines()
  vim.cmd('undo')

  -- 8. Typing inside a hunk makes the proposal stale: the drawing goes, the message is shown once.
  refactor('rename total to acc')
  api.nvim_buf_set_text(H.buf, 1, 4, 1, 9, { 'count' })
  none_left('the stale proposal to go')
  out.stale_marks = #api.nvim_buf_get_extmarks(H.buf, ns, 0, -1, {})
  out.stale_messages = vim.tbl_map(function(n)
    return n.msg
  end, H.notified('can no longer be applied'))
  out.maps_after_stale = buffer_maps()
end)
