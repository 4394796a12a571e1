-- init.lua for a real (non-headless) Neovim in tmux: explain add()'s body, then touch KIMI_TEST_READY
-- so the test captures the pane.
vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
vim.o.termguicolors = true
vim.o.number = true
vim.o.laststatus = 2
vim.o.statusline = '%f %= %{v:lua.vim.lsp.status()} '
vim.api.nvim_create_autocmd('LspProgress', { command = 'redrawstatus' })

require('kimi').setup({
  cmd = { assert(os.getenv('KIMI_TEST_CMD')) },
  baseUrl = assert(os.getenv('KIMI_TEST_BASE_URL')),
})

local float = require('kimi.float')
local finish = float.finish
float.finish = function(result, ctx)
  finish(result, ctx)
  vim.defer_fn(function()
    vim.cmd('redraw!')
    local f = assert(io.open(assert(os.getenv('KIMI_TEST_READY')), 'w'))
    f:write('ok')
    f:close()
  end, 200)
end

vim.api.nvim_create_autocmd('LspAttach', {
  once = true,
  callback = function()
    vim.schedule(function()
      vim.api.nvim_win_set_cursor(0, { 2, 0 })
      vim.cmd('normal! V3j\27')
      vim.cmd("'<,'>KimiExplain")
    end)
  end,
})
