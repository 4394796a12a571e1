-- A rejected key: a `kimi` diagnostic (code unauthorized) whose quick fix runs the client-side
-- command kimi.enterApiKey (inputsecret, then kimi.setApiKey).
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  H.start()
  local float = require('kimi.float')

  H.explain(2, 5, 'a kimi diagnostic', function()
    return #H.diagnostics() > 0
  end)
  out.diagnostics = H.diagnostics()
  H.wait(5000, 'an error message', function()
    for _, n in ipairs(H.notifications) do
      if n.level == vim.log.levels.ERROR then
        out.notified_error = n.msg
        return true
      end
    end
  end)

  require('kimi.float').close() -- back to the code
  vim.fn.inputsecret = function(prompt)
    out.secret_prompt = prompt
    return 'sk-fake-valid-key'
  end
  out.quick_fix_commands = {}
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  vim.lsp.buf.code_action({
    apply = true,
    context = { only = { 'quickfix' } },
    filter = function(action)
      local cmd = action.command
      local name = type(cmd) == 'table' and cmd.command or cmd
      table.insert(out.quick_fix_commands, name)
      return name == 'kimi.enterApiKey'
    end,
  })
  out.key_message = H.wait(20000, 'the key to be set', function()
    local n = H.notified('Kimi API key')[1]
    return n and n.msg
  end)

  local answers = H.count_answers()
  float.close()
  H.explain(2, 5, 'a successful explanation', function()
    return answers() == 1
  end)
  out.diagnostics_after_success = H.diagnostics()
end)
