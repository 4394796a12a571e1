-- An unknown model (kimi.model = kimi-k9): a `kimi` diagnostic with code model-not-found.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  H.start()
  H.explain(2, 5, 'a kimi diagnostic', function()
    return #H.diagnostics() > 0
  end)
  out.diagnostics = H.diagnostics()
  local cur = require('kimi.float').current()
  H.wait(5000, 'the float to show the failure', function()
    return cur and cur.buf and vim.api.nvim_buf_is_valid(cur.buf) and H.lines(cur.buf)[1] ~= ''
  end)
  out.float_body = table.concat(H.lines(cur.buf), '\n')
end)
