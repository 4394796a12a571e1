-- init.lua for a real (non-headless) Neovim in tmux: refactor add()'s body ("rename total to acc"),
-- then touch KIMI_TEST_READY once the proposal is drawn so the test captures the pane.
vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
vim.o.termguicolors = true
vim.o.number = true
vim.o.laststatus = 2
vim.o.statusline = '%f %= %{v:lua.vim.lsp.status()} '
vim.o.showmode = false
vim.o.shortmess = vim.o.shortmess .. 'F'
vim.notify = function() end -- the spent line would sit in the picture's last row

require('kimi').setup({
  cmd = { assert(os.getenv('KIMI_TEST_CMD')) },
  baseUrl = assert(os.getenv('KIMI_TEST_BASE_URL')),
})

local proposal = require('kimi.proposal')
local on_proposal = proposal.on_proposal
local done = false
proposal.on_proposal = function(...)
  on_proposal(...)
  if not done and #proposal.get(0) > 0 then
    done = true
    vim.defer_fn(function()
      vim.api.nvim_win_set_cursor(0, { 2, 4 })
      vim.cmd('echo "" | redraw!')
      local f = assert(io.open(assert(os.getenv('KIMI_TEST_READY')), 'w'))
      f:write('ok')
      f:close()
    end, 200)
  end
end

vim.api.nvim_create_autocmd('LspAttach', {
  once = true,
  callback = function()
    vim.schedule(function()
      vim.api.nvim_win_set_cursor(0, { 2, 0 })
      vim.cmd('normal! V3j\27')
      vim.cmd("'<,'>KimiRefactor rename total to acc")
    end)
  end,
})
