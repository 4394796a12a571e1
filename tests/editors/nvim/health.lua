-- :checkhealth kimi with the server attached, then with it stopped.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

local function checkhealth()
  vim.cmd('checkhealth kimi')
  local lines = H.lines()
  vim.cmd('bwipeout!')
  return lines
end

H.run(function(out)
  H.start()
  out.attached = checkhealth()
  vim.lsp.enable('kimi', false)
  H.wait(10000, 'the server to stop', function()
    return #vim.lsp.get_clients({ name = 'kimi' }) == 0
  end)
  out.detached = checkhealth()
end)
