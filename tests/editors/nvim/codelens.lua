-- The kimi code lenses with no user config beyond setup(): fetched after :KimiExplain, the "show" lens
-- opens the explanation in the answer float, "dismiss" and kimi.clearExplanations remove them.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

--- The kimi lenses of `buf`: {title, line, command}.
local function lenses(buf)
  local list = {}
  for _, lens in ipairs(vim.lsp.codelens.get(buf)) do
    if lens.command and lens.command.command:find('^kimi%.') then
      list[#list + 1] = { title = lens.command.title, line = lens.range.start.line, command = lens.command.command }
    end
  end
  table.sort(list, function(a, b)
    return a.line < b.line or (a.line == b.line and a.title < b.title)
  end)
  return list
end

--- The code lens text drawn in `buf` (virtual text of Neovim's code lens namespaces).
local function drawn(buf)
  local texts = {}
  for name, ns in pairs(vim.api.nvim_get_namespaces()) do
    if name:find('^nvim%.lsp%.codelens') then
      for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
        local chunks = {}
        for _, chunk in ipairs(mark[4].virt_text or {}) do
          chunks[#chunks + 1] = chunk[1]
        end
        texts[#texts + 1] = { line = mark[2], text = table.concat(chunks) }
      end
    end
  end
  return texts
end

local function has_title(list, prefix)
  for _, l in ipairs(list) do
    if vim.startswith(l.title or l.text, prefix) then
      return true
    end
  end
  return false
end

--- Make vim.ui.select (vim.lsp.codelens.run() with several lenses on the line) pick the lens whose
--- title starts with `prefix`.
local function choose(out, prefix)
  vim.ui.select = function(items, opts, on_choice)
    out.select_items = vim.tbl_map(opts.format_item, items)
    for _, item in ipairs(items) do
      if vim.startswith(opts.format_item(item), prefix) then
        return on_choice(item)
      end
    end
    on_choice(nil)
  end
end

local function md_buffers()
  local names = {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    local name = vim.api.nvim_buf_get_name(b)
    if vim.fs.basename(name):find('^kimi%-.*%.md$') then
      names[#names + 1] = name
    end
  end
  return names
end

H.run(function(out)
  local client = H.start()
  local float = require('kimi.float')
  local answers = H.count_answers()
  local source_win = vim.api.nvim_get_current_win()

  -- (a) :KimiExplain on add()'s body: the lenses appear on its first line, nobody refreshed them by hand.
  H.explain(2, 5, 'the explanation', function()
    return answers() == 1
  end)
  out.lenses = H.wait(10000, 'the kimi lenses after :KimiExplain', function()
    local list = lenses(H.buf)
    return has_title(list, 'Kimi: explained') and list
  end)
  out.drawn = H.wait(5000, 'the lenses drawn', function()
    local d = drawn(H.buf)
    return #d > 0 and d
  end)
  local first = float.current()
  out.first_body = first.body
  float.close()
  vim.api.nvim_set_current_win(source_win)

  -- (b) The "show" lens: the explanation in the answer float, no markdown file opened.
  local before = #vim.api.nvim_list_bufs()
  choose(out, 'Kimi: explained')
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  vim.lsp.codelens.run()
  local shown = H.wait(10000, 'the explanation in the float', function()
    local cur = float.current()
    return cur and cur.win ~= first.win and cur.win and vim.api.nvim_win_is_valid(cur.win) and cur
  end)
  vim.wait(300) -- time for a window/showDocument, if the server sent one
  local config = vim.api.nvim_win_get_config(shown.win)
  local function text(t)
    return type(t) == 'table' and table.concat(vim.tbl_map(function(c)
      return c[1]
    end, t)) or t
  end
  out.shown = {
    body = shown.body,
    lines = H.lines(shown.buf),
    title = text(config.title),
    footer = text(config.footer),
    filetype = vim.bo[shown.buf].filetype,
    focused = vim.api.nvim_get_current_win() == shown.win,
  }
  out.show_items = out.select_items
  out.md_buffers = md_buffers()
  out.new_buffers = #vim.api.nvim_list_bufs() - before -- the float's scratch buffer
  -- running a lens hides that line's lenses for a moment: they come back
  out.drawn_after_show = H.wait(5000, 'the lenses drawn again after show', function()
    local d = drawn(H.buf)
    return #d > 0 and d
  end)
  vim.api.nvim_feedkeys('q', 'x', false)
  out.closed_with_q = not vim.api.nvim_win_is_valid(shown.win)

  -- (c) "dismiss": the lenses go away.
  vim.api.nvim_set_current_win(source_win)
  choose(out, 'dismiss')
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  vim.lsp.codelens.run()
  out.lenses_after_dismiss = H.wait(10000, 'no lenses after dismiss', function()
    local list = lenses(H.buf)
    return #list == 0 and list
  end)

  -- kimi.clearExplanations from anywhere but a lens: the server's workspace/codeLens/refresh reaches
  -- the plugin, which fetches the (now empty) lenses.
  H.explain(8, 9, 'the second explanation', function()
    return answers() == 2
  end)
  out.second_lenses = H.wait(10000, 'the lenses of the second explanation', function()
    local list = lenses(H.buf)
    return has_title(list, 'Kimi: explained') and list
  end)
  float.close()
  vim.api.nvim_set_current_win(source_win)
  client:exec_cmd({
    title = 'clear',
    command = 'kimi.clearExplanations',
    arguments = { { uri = vim.uri_from_bufnr(H.buf) } },
  }, { bufnr = H.buf }, function() end)
  out.lenses_after_clear = H.wait(10000, 'no lenses after kimi.clearExplanations', function()
    local list = lenses(H.buf)
    return #list == 0 and list
  end)
end)
