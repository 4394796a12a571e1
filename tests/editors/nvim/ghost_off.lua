-- setup({ completion = false }): typing shows no ghost text, maps no key, and the server's
-- kimi.completion.enabled is false (an explicit request gets no item).
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

local api = vim.api

H.main(function(out)
  local client = H.start({ completion = false })
  local ghost = require('kimi.ghost')
  out.settings_completion = client.settings.kimi.completion
  api.nvim_win_set_cursor(0, { 3, 0 })
  H.type('A')
  H.type('n ')
  H.sleep(600) -- far longer than the debounce
  out.line = api.nvim_get_current_line()
  out.ghost = ghost.get(0)
  out.marks = #api.nvim_buf_get_extmarks(0, ghost.ns, 0, -1, {})
  out.maps = {}
  for _, m in ipairs(api.nvim_buf_get_keymap(0, 'i')) do
    if (m.desc or ''):find('^Kimi:') then
      out.maps[#out.maps + 1] = m.lhs
    end
  end
  H.type('<Esc>')
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  local items
  client:request('textDocument/inlineCompletion', params, function(_, result)
    items = type(result) == 'table' and (result.items or result) or {}
  end, 0)
  out.explicit_items = #H.wait(5000, 'the explicit request', function()
    return items
  end)
end)
