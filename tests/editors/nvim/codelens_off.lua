-- setup({ codelens = false }): the plugin fetches no code lenses (the server still offers them).
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  local client = H.start({ codelens = false })
  out.settings = client.settings
  out.init_options = client.config.init_options

  out.codelens_requests = 0
  local request = client.request
  client.request = function(self, method, ...)
    if method == 'textDocument/codeLens' then
      out.codelens_requests = out.codelens_requests + 1
    end
    return request(self, method, ...)
  end

  local answers = H.count_answers()
  H.explain(2, 5, 'the explanation', function()
    return answers() == 1
  end)
  require('kimi.float').close()
  vim.cmd('doautocmd BufEnter') -- and InsertLeave: nothing either
  vim.cmd('doautocmd InsertLeave')
  vim.wait(500)
  out.requests_after_explain = out.codelens_requests
  out.lenses = #vim.lsp.codelens.get(H.buf)

  -- The explanation is there all the same: the user's own refresh fetches its lenses.
  vim.lsp.codelens.refresh({ bufnr = H.buf })
  out.lenses_on_request = H.wait(10000, 'lenses fetched by hand', function()
    local titles = {}
    for _, lens in ipairs(vim.lsp.codelens.get(H.buf)) do
      titles[#titles + 1] = lens.command and lens.command.title
    end
    return #titles > 0 and titles
  end)
end)
