-- No setup(): the documented plain route, vim.lsp.config() + vim.lsp.enable(), with the settings
-- only in `settings.kimi` (lsp/kimi.lua's before_init seeds initializationOptions from them).
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  vim.opt.rtp:prepend(assert(os.getenv('KIMI_TEST_PLUGIN')))
  vim.cmd.runtime('plugin/kimi.lua')
  vim.lsp.config('kimi', {
    cmd = { assert(os.getenv('KIMI_TEST_CMD')) },
    settings = { kimi = { baseUrl = assert(os.getenv('KIMI_TEST_BASE_URL')), model = 'moonshot-v1-8k' } },
  })
  vim.lsp.config('kimi', {
    before_init = (function(orig)
      return function(params, config)
        orig(params, config)
        out.initialization_options = params.initializationOptions
      end
    end)(vim.lsp.config.kimi.before_init),
  })
  vim.lsp.enable('kimi')
  vim.cmd.edit(assert(os.getenv('KIMI_TEST_FILE')))
  H.client()

  local float = require('kimi.float')
  local answers = H.count_answers()
  H.explain(2, 5, 'the explanation', function()
    return answers() == 1
  end)
  out.body = float.current().body
end)
