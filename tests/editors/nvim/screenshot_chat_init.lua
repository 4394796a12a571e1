-- init.lua for a real (non-headless) Neovim in tmux: explain add()'s body, open the conversation
-- with :KimiChat, send a follow-up and touch KIMI_TEST_READY once its answer is in the chat buffer.
vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
vim.o.termguicolors = true
vim.o.laststatus = 2
vim.o.shortmess = vim.o.shortmess .. 'F'
vim.notify = function() end

require('kimi').setup({
  cmd = { assert(os.getenv('KIMI_TEST_CMD')) },
  baseUrl = assert(os.getenv('KIMI_TEST_BASE_URL')),
})

local float = require('kimi.float')
local chat = require('kimi.chat')
local finish = float.finish
local started = false

local function answered(buf)
  local c = chat.get(buf)
  if c and not c.busy and #c.turns == 2 then
    vim.api.nvim_buf_set_lines(buf, -2, -1, false, { 'and with #file:sample.py' })
    vim.api.nvim_win_set_cursor(0, { vim.api.nvim_buf_line_count(buf), 23 })
    vim.cmd('normal! zb')
    vim.cmd('redraw!')
    local f = assert(io.open(assert(os.getenv('KIMI_TEST_READY')), 'w'))
    f:write('ok')
    f:close()
    return
  end
  vim.defer_fn(function()
    answered(buf)
  end, 50)
end

float.finish = function(result, ctx)
  finish(result, ctx)
  if started then
    return
  end
  started = true
  vim.schedule(function()
    float.close()
    vim.cmd('KimiChat')
    vim.cmd('only')
    local buf = vim.api.nvim_get_current_buf()
    vim.defer_fn(function()
      vim.api.nvim_buf_set_lines(buf, -2, -1, false, { 'and why not a dict?' })
      chat.send(buf)
      answered(buf)
    end, 300)
  end)
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
