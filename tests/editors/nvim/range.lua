-- How a selection becomes an LSP range (no server needed): linewise, characterwise with multibyte
-- text in each position encoding, and the live selection of a visual-mode <Cmd> mapping.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
  local util = require('kimi.util')
  vim.api.nvim_buf_set_lines(0, 0, -1, false, { 'héllo 😀 wörld', 'second line', '' })
  local function range(opts, enc)
    return util.range(opts, 0, enc)
  end

  -- `v` from the first `l` (byte 3) to the emoji (bytes 7-10), inclusive.
  vim.api.nvim_win_set_cursor(0, { 1, 3 })
  vim.cmd('normal! v4l\27')
  local marks = { range = 2, line1 = 1, line2 = 1 }
  out.char = {
    ['utf-8'] = range(marks, 'utf-8'),
    ['utf-16'] = range(marks, 'utf-16'),
    ['utf-32'] = range(marks, 'utf-32'),
  }
  -- The same lines given by number (`:1KimiExplain` after that selection) stay characterwise only
  -- when they are the selection's lines; other lines are whole lines.
  out.other_lines = range({ range = 2, line1 = 2, line2 = 2 }, 'utf-16')

  -- `V` over both lines: whole lines, up to the end of the last one.
  vim.api.nvim_win_set_cursor(0, { 1, 5 })
  vim.cmd('normal! Vj\27')
  out.line = range({ range = 2, line1 = 1, line2 = 2 }, 'utf-16')

  -- `v` to the end of the line with `$`, and onto an empty line.
  vim.api.nvim_win_set_cursor(0, { 2, 7 })
  vim.cmd('normal! v$\27')
  out.dollar = range({ range = 2, line1 = 2, line2 = 2 }, 'utf-16')
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  vim.cmd('normal! vj\27')
  out.empty_end = range({ range = 2, line1 = 2, line2 = 3 }, 'utf-16')

  -- No range: the cursor line.
  vim.api.nvim_win_set_cursor(0, { 2, 3 })
  out.cursor = range({ range = 0 }, 'utf-16')

  -- Still in visual mode (a <Cmd> mapping): the live selection, backwards, and visual mode ends.
  vim.keymap.set('x', 'gR', function()
    out.live = range({ range = 0 }, 'utf-16')
    out.mode_after = vim.fn.mode()
  end)
  vim.api.nvim_win_set_cursor(0, { 1, 12 }) -- the `w` of wörld; 6 x h goes back to the first `l`
  vim.api.nvim_feedkeys('vhhhhhhgR', 'x', false)
end)
