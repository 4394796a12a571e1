-- :KimiStatus prints the server's status; :KimiCancel stops a running explanation.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  H.start()
  vim.cmd('KimiStatus')
  out.status = H.wait(20000, 'the status', function()
    local n = H.notified('kimi-lsp ')[1]
    return n and n.msg
  end)

  local float = require('kimi.float')
  H.select_lines(2, 5)
  local started = vim.uv.hrtime()
  vim.cmd("'<,'>KimiExplain")
  H.wait(20000, 'the float', function()
    return float.current()
  end)
  vim.cmd('KimiCancel')
  out.cancel_message = H.wait(20000, 'the cancel count', function()
    local n = H.notified('cancelled')[1]
    return n and n.msg
  end)
  local win = float.current().win
  H.wait(20000, 'the float to say cancelled', function()
    local footer = vim.api.nvim_win_get_config(win).footer
    return vim.inspect(footer):find('cancelled', 1, true)
  end)
  out.float_footer_cancelled = true
  out.elapsed = (vim.uv.hrtime() - started) / 1e9

  -- <C-c> in the float cancels that request.
  float.close()
  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiExplain")
  local cur = H.wait(20000, 'the second float', function()
    local c = float.current()
    return c and c.win ~= win and c.win and c
  end)
  assert(vim.api.nvim_get_current_win() == cur.win, 'the float should have the focus')
  vim.api.nvim_feedkeys(vim.keycode('<C-c>'), 'x', false)
  H.wait(20000, 'the float to say cancelled after <C-c>', function()
    return vim.inspect(vim.api.nvim_win_get_config(cur.win).footer):find('cancelled', 1, true)
  end)
  out.ctrl_c_cancelled = true
end)
