-- :KimiSetKey with inputsecret stubbed. No keychain backend here: the server keeps the key for the
-- session and says so; nothing crashes.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  local client = H.start()
  vim.fn.inputsecret = function(prompt)
    out.prompt = prompt
    return 'sk-fake-valid-key'
  end
  vim.cmd('KimiSetKey')
  H.wait(20000, 'the server to answer', function()
    return #H.notified('Kimi API key') > 0
  end)

  vim.fn.inputsecret = function()
    return ''
  end
  vim.cmd('KimiSetKey')
  out.empty_key_message = H.notified('no key entered')[1]

  local resp = client:request_sync('workspace/executeCommand', {
    command = 'kimi.status',
    arguments = { vim.empty_dict() },
  }, 5000)
  out.alive = not client:is_stopped() and resp ~= nil and resp.result ~= nil and resp.result.keyPresent == true
end)
