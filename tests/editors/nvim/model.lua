-- :KimiModel picks from kimi.listModels with vim.ui.select; the switch needs no restart.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  local client = H.start()
  vim.ui.select = function(items, opts, on_choice)
    out.items = {}
    local choice
    for _, item in ipairs(items) do
      table.insert(out.items, opts.format_item(item))
      if item.id == 'moonshot-v1-32k' then
        choice = item
      end
    end
    out.prompt = opts.prompt
    on_choice(choice)
  end
  vim.cmd('KimiModel')
  H.wait(20000, 'the model switch', function()
    return #H.notified('model: moonshot-v1-32k') > 0
  end)

  local answers = H.count_answers()
  H.explain(2, 5, 'the explanation', function()
    return answers() == 1
  end)

  local clients = vim.lsp.get_clients({ name = 'kimi' })
  out.clients = #clients
  out.same_client = clients[1].id == client.id and not client:is_stopped()
  out.settings_model = client.settings.kimi.model
  local resp = client:request_sync('workspace/executeCommand', {
    command = 'kimi.status',
    arguments = { vim.empty_dict() },
  }, 5000)
  out.status_model = resp and resp.result and resp.result.model
end)
