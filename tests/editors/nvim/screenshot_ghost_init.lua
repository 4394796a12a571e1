-- init.lua for a real (non-headless) Neovim in tmux: in mean.py, type at the start of the body and
-- touch KIMI_TEST_READY once the ghost text (three lines, from the fake) is drawn.
vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
vim.o.termguicolors = true
vim.o.number = true
vim.o.laststatus = 2
vim.o.statusline = '%t %= <M-l> accept · <M-w> word · <C-]> hide '
vim.o.shortmess = vim.o.shortmess .. 'F'
vim.notify = function() end

require('kimi').setup({
  cmd = { assert(os.getenv('KIMI_TEST_CMD')) },
  baseUrl = assert(os.getenv('KIMI_TEST_BASE_URL')),
  completion = { debounceMs = 30 },
})

local ghost = require('kimi.ghost')
local function ready()
  if ghost.get(0) then
    vim.cmd('redraw!')
    local f = assert(io.open(assert(os.getenv('KIMI_TEST_READY')), 'w'))
    f:write('ok')
    f:close()
    return
  end
  vim.defer_fn(ready, 50)
end

vim.api.nvim_create_autocmd('LspAttach', {
  once = true,
  callback = function()
    vim.defer_fn(function()
      vim.api.nvim_win_set_cursor(0, { 3, 0 })
      vim.api.nvim_feedkeys(vim.keycode('A    if'), 'nt', false)
      vim.defer_fn(ready, 100)
    end, 200)
  end,
})
