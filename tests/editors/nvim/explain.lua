-- :KimiExplain opens a markdown float on `kimi/stream` start, fills it from the deltas, and `q` closes it.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  H.start()
  local float = require('kimi.float')
  local source_win = vim.api.nvim_get_current_win()

  out.stream_kinds = {}
  local starts, finished = {}, 0
  local on_stream = float.on_stream
  float.on_stream = function(err, params, ctx)
    if params.kind == 'start' then
      table.insert(starts, params)
    end
    if params.requestId == starts[1].requestId then -- the first request's notifications
      table.insert(out.stream_kinds, params.kind)
    end
    return on_stream(err, params, ctx)
  end
  local finish = float.finish
  float.finish = function(result, ctx)
    if finished == 0 then
      local cur = float.current()
      out.opened_before_result = cur ~= nil and cur.win ~= nil and vim.api.nvim_win_is_valid(cur.win)
      out.streamed_body = cur and cur.body or ''
    end
    finish(result, ctx)
    finished = finished + 1
  end

  -- 1. Linewise selection of add()'s body.
  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiExplain")
  H.wait(20000, 'the explanation', function()
    return finished == 1
  end)
  local cur = assert(float.current())
  local win, buf = assert(cur.win), assert(cur.buf)
  out.float = {
    body = cur.body,
    reasoning = cur.reasoning,
    lines = H.lines(buf),
    filetype = vim.bo[buf].filetype,
    wrap = vim.wo[win].wrap,
    focused = vim.api.nvim_get_current_win() == win,
    fold_closed_at_1 = vim.api.nvim_win_call(win, function()
      return vim.fn.foldclosedend(1)
    end),
    foldtext = vim.api.nvim_win_call(win, function()
      return vim.fn.foldtextresult(1)
    end),
  }
  assert(out.float.focused, 'the float should have the focus')
  vim.api.nvim_feedkeys('r', 'x', false)
  out.fold_open_after_r = vim.api.nvim_win_call(win, function()
    return vim.fn.foldclosed(1)
  end)
  vim.api.nvim_feedkeys('q', 'x', false)
  out.closed_with_q = not vim.api.nvim_win_is_valid(win) and #H.floats() == 0
  out.back_in_source = vim.api.nvim_get_current_win() == source_win

  -- The explanation stays attached to the code: hover (K) shows it, and a code lens marks it.
  vim.api.nvim_win_set_cursor(0, { 3, 4 })
  local encoding = vim.lsp.get_clients({ name = 'kimi' })[1].offset_encoding
  local position = vim.lsp.util.make_position_params(0, encoding)
  local hover = vim.lsp.buf_request_sync(0, 'textDocument/hover', position, 5000)
  for _, resp in pairs(hover or {}) do
    out.hover = resp.result and resp.result.contents and resp.result.contents.value
  end
  vim.lsp.codelens.refresh({ bufnr = 0 })
  out.lenses = H.wait(5000, 'code lenses', function()
    local titles = {}
    for _, lens in ipairs(vim.lsp.codelens.get(0)) do
      if lens.command then
        table.insert(titles, lens.command.title)
      end
    end
    return #titles > 0 and titles
  end)

  -- 2. Characterwise: `total` on line 2 (bytes 4..8).
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  vim.cmd('normal! v4l\27')
  vim.cmd("'<,'>KimiExplain")
  H.wait(20000, 'the second explanation', function()
    return finished == 2
  end)
  out.charwise_range = starts[2].range
  out.charwise_body = float.current().body
  float.close()

  -- 3. From visual mode through a <Cmd> mapping (no '< '> marks yet).
  vim.keymap.set('x', 'gK', '<Cmd>KimiExplain<CR>')
  vim.api.nvim_win_set_cursor(0, { 8, 0 })
  vim.api.nvim_feedkeys('Vjg' .. 'K', 'x', false)
  H.wait(20000, 'the third explanation', function()
    return finished == 3
  end)
  out.mapping_range = starts[3].range
  out.mapping_body = float.current().body
  out.mode_after_mapping = vim.fn.mode()
end)
