-- Ghost text (run from the main loop: insert-mode typing). In ghost.py, whose comment tells the fake
-- what to complete with: typing shows the fake's completion as inline virtual text after the
-- debounce; <M-l> inserts it (one undo step); <M-w> inserts one word; moving the cursor clears it;
-- :KimiComplete asks in normal mode; :KimiNextEdit shows a next edit at the cursor as ghost text that
-- <M-l> accepts.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

local api = vim.api

local function marks(ns)
  local list = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
    local d = m[4]
    local item = { row = m[2], col = m[3], hl_group = d.hl_group, end_col = d.end_col }
    if d.virt_text then
      local text, hl = {}, nil
      for _, chunk in ipairs(d.virt_text) do
        text[#text + 1] = chunk[1]
        hl = hl or chunk[2]
      end
      item.virt_text, item.virt_text_hl, item.virt_text_pos = table.concat(text), hl, d.virt_text_pos
    end
    if d.virt_lines then
      item.virt_lines = {}
      for _, vl in ipairs(d.virt_lines) do
        item.virt_lines[#item.virt_lines + 1] = vl[1] and vl[1][1] or ''
      end
    end
    list[#list + 1] = item
  end
  return list
end

local function line(n)
  return api.nvim_buf_get_lines(0, n - 1, n, false)[1]
end

H.main(function(out)
  local client = H.start({ completion = { debounceMs = 30 } })
  local ghost = require('kimi.ghost')
  local ns = ghost.ns
  out.settings_completion = client.settings.kimi.completion
  out.maps = {}
  for _, m in ipairs(api.nvim_buf_get_keymap(0, 'i')) do
    if (m.desc or ''):find('^Kimi:') then
      out.maps[#out.maps + 1] = m.lhs
    end
  end
  table.sort(out.maps)
  out.hl = api.nvim_get_hl(0, { name = 'KimiGhost' })

  local function shown(what)
    return H.wait(10000, what, function()
      return ghost.get(0)
    end)
  end

  -- 1. Typing at the end of `    retur` ("n "): after the debounce the fake's "x * 2" is drawn at the cursor.
  api.nvim_win_set_cursor(0, { 3, 0 })
  H.type('A')
  H.type('n ')
  out.first = shown('the ghost text')
  out.cursor = api.nvim_win_get_cursor(0)
  out.mode = api.nvim_get_mode().mode
  out.marks = marks(ns)
  out.line_with_ghost = line(3)

  -- 2. <M-l> inserts it; the cursor goes after it; one undo takes it out again (the typing stays).
  H.type('<M-l>')
  out.accepted = line(3)
  out.accepted_cursor = api.nvim_win_get_cursor(0)
  out.accepted_mode = api.nvim_get_mode().mode
  out.marks_after_accept = #marks(ns)
  H.type('<Esc>')
  H.type('u')
  out.undone = line(3)

  -- 3. <M-w> inserts one word at a time, the rest stays shown.
  H.type('A')
  H.type('<BS> ')
  shown('the ghost text again')
  H.type('<M-w>')
  out.word1 = line(3)
  out.rest1 = ghost.get(0)
  out.rest1_marks = marks(ns)
  H.type('<M-w>')
  out.word2 = line(3)
  out.rest2 = ghost.get(0)

  -- 4. Typing the next character of the ghost text keeps the rest; moving the cursor clears it.
  H.type(' ')
  out.typed_through = ghost.get(0)
  H.type('<Left>')
  out.after_move = ghost.get(0)
  out.marks_after_move = #marks(ns)
  H.type('<Esc>')
  out.mode_after_esc = api.nvim_get_mode().mode

  -- 5. :KimiComplete in normal mode (Invoked): shown at the cursor; leaving it there and moving clears it.
  api.nvim_buf_set_lines(0, 2, 3, false, { '    return ' })
  api.nvim_win_set_cursor(0, { 3, 10 })
  vim.cmd('KimiComplete')
  out.invoked = shown('the invoked completion')
  H.type('k')
  out.after_k = ghost.get(0)

  -- 6. The server counted the accepts.
  local status
  client:exec_cmd({ title = 'status', command = 'kimi.status', arguments = { {} } }, { bufnr = 0 }, function(_, r)
    status = r
  end)
  out.status = H.wait(5000, 'kimi.status', function()
    return status
  end).completion

  -- 7. :KimiNextEdit after renaming `total` to `size` on line 2 of area.py: the rename of line 3 is ghost text.
  vim.cmd.edit(vim.fs.joinpath(vim.fs.dirname(H.buf_name or api.nvim_buf_get_name(H.buf)), 'area.py'))
  H.client()
  api.nvim_buf_set_text(0, 1, 4, 1, 9, { 'size' })
  H.sleep(200)
  api.nvim_win_set_cursor(0, { 3, 11 })
  vim.cmd('KimiNextEdit')
  out.next_edit = shown('the next edit')
  out.next_marks = marks(ns)
  out.next_unchanged = line(3)
  H.type('<M-l>')
  out.next_accepted = api.nvim_buf_get_lines(0, 0, -1, false)
  out.next_marks_after = #marks(ns)
end)
