-- setup({ keymaps = false }): a proposal is drawn, but no key is mapped and the header names the
-- commands; :KimiAccept on a hunk accepts that hunk. Then setup({ keymaps = { accept = … } }) maps
-- the given key (and keeps the other defaults), restoring the user's own buffer-local mapping after.
-- Last, lsp/kimi.lua's before_init drops `proposals` when lua/kimi/proposal.lua is not on 'runtimepath'.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

local api = vim.api

local function kimi_maps()
  local found = {}
  for _, mode in ipairs({ 'n', 'x', 'o' }) do
    for _, m in ipairs(api.nvim_buf_get_keymap(H.buf, mode)) do
      if (m.desc or ''):find('^Kimi:') and not (m.desc or ''):find('ghost text', 1, true) then -- not the ghost text's keys
        found[#found + 1] = mode .. ' ' .. m.lhs
      end
    end
  end
  table.sort(found)
  return found
end

local function headers(ns)
  local list = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(H.buf, ns, 0, -1, { details = true })) do
    if m[4].virt_text then
      local text = {}
      for _, chunk in ipairs(m[4].virt_text) do
        text[#text + 1] = chunk[1]
      end
      list[#list + 1] = table.concat(text)
    end
  end
  return list
end

H.run(function(out)
  H.start({ keymaps = false })
  local proposal = require('kimi.proposal')
  local ns = api.nvim_get_namespaces()['kimi.proposal']
  local client = vim.lsp.get_clients({ name = 'kimi' })[1]
  out.settings = client.config.settings
  local function refactor()
    H.select_lines(2, 5)
    vim.cmd("'<,'>KimiRefactor rename total to acc")
    return H.wait(20000, 'the proposal', function()
      return proposal.get(H.buf)[1]
    end)
  end

  refactor()
  out.maps_off = kimi_maps()
  out.headers_off = headers(ns)
  -- :KimiAccept with the cursor on the second hunk (line 4): only that one
  api.nvim_win_set_cursor(0, { 4, 0 })
  vim.cmd('KimiAccept')
  H.wait(20000, 'the second hunk to be accepted', function()
    return H.lines()[5] == '    return acc'
  end)
  out.after_accept = H.lines()
  out.left = H.wait(20000, 'the first hunk to stay', function()
    local p = proposal.get(H.buf)[1]
    return p and #p.hunks == 1 and p
  end)
  vim.cmd('KimiReject!')
  H.wait(20000, 'the rest to be rejected', function()
    return #proposal.get(H.buf) == 0
  end)
  vim.cmd('undo')

  -- Custom keys; a buffer-local mapping of the user's on one of them comes back when the proposal ends.
  vim.keymap.set('n', 'gR', '<Cmd>let g:user_gR = 1<CR>', { buffer = H.buf, desc = 'user gR' })
  require('kimi').setup({ keymaps = { accept = '<Space>y', next = false } })
  refactor()
  out.maps_custom = kimi_maps()
  out.headers_custom = headers(ns)
  api.nvim_win_set_cursor(0, { 2, 0 })
  vim.api.nvim_feedkeys(vim.keycode('<Space>y'), 'mx', false)
  H.wait(20000, 'the first hunk to be accepted with <Space>y', function()
    return H.lines()[2] == '    acc = 0'
  end)
  vim.cmd('KimiReject!')
  H.wait(20000, 'the rest to be rejected', function()
    return #proposal.get(H.buf) == 0
  end)
  out.maps_after = kimi_maps()
  local gR = vim.fn.maparg('gR', 'n', false, true)
  out.user_gR = gR.desc

  -- An insertion (:KimiDocs puts a comment above `def add`): drawn above its line, the window scrolled
  -- so that lines above the first one show; :KimiAccept on that line takes it.
  vim.cmd('1,5KimiDocs')
  out.docs = H.wait(20000, 'the docs proposal', function()
    return proposal.get(H.buf)[1]
  end)
  for _, m in ipairs(api.nvim_buf_get_extmarks(H.buf, ns, 0, -1, { details = true })) do
    if m[4].virt_lines then
      out.docs_mark = { row = m[2], above = m[4].virt_lines_above, text = m[4].virt_lines[1][1][1]:gsub('%s+$', '') }
    end
  end
  out.docs_topfill = vim.fn.winsaveview().topfill
  api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('KimiAccept')
  H.wait(20000, 'the comment to be inserted', function()
    return #proposal.get(H.buf) == 0 and H.lines()[1] ~= 'def add(xs):'
  end)
  out.after_docs = H.lines()

  -- Without the plugin's lua/ on 'runtimepath' nothing would draw a proposal: the option is dropped.
  local config = dofile(assert(os.getenv('KIMI_TEST_PLUGIN')) .. '/lsp/kimi.lua')
  local params = { initializationOptions = vim.deepcopy(config.init_options) }
  config.before_init(params, { settings = {} })
  out.with_plugin = params.initializationOptions.proposals
  vim.opt.rtp:remove(assert(os.getenv('KIMI_TEST_PLUGIN')))
  params = { initializationOptions = vim.deepcopy(config.init_options) }
  config.before_init(params, { settings = {} })
  out.without_plugin = params.initializationOptions.proposals == nil
end)
