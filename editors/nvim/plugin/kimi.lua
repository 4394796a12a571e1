-- kimi.nvim: the :Kimi* user commands (edits come as proposals, for :KimiAccept / :KimiReject /
-- :KimiRefine; conversations in :KimiChat buffers), the client-side commands `kimi.enterApiKey` (the
-- server's quick fixes) and `kimi.showExplanation` (its code lens), and, for every buffer kimi
-- attaches to, the kimi code lenses and the ghost text. The modules load on first use; the LSP config
-- is lsp/kimi.lua.
if vim.g.loaded_kimi then
  return
end
vim.g.loaded_kimi = true

if vim.fn.has('nvim-0.11') == 0 then
  vim.notify_once('kimi: needs Neovim 0.11 or newer (vim.lsp.config)', vim.log.levels.WARN)
  return
end

--- name -> { function in lua/kimi/commands.lua, command attributes }
local user_commands = {
  KimiExplain = { 'explain', { range = true, desc = 'Kimi: explain the selection' } },
  KimiRefactor = { 'refactor', { range = true, nargs = '*', desc = 'Kimi: refactor the selection [instruction]' } },
  KimiFix = { 'fix', { range = true, desc = 'Kimi: fix the selection' } },
  KimiDocs = { 'document', { range = true, desc = 'Kimi: document the selection' } },
  KimiAsk = { 'ask', { range = true, nargs = '*', desc = 'Kimi: ask about the selection or the file [question]' } },
  KimiModel = { 'model', { desc = 'Kimi: choose the model (no restart)' } },
  KimiSetKey = { 'set_key', { desc = 'Kimi: store a Moonshot API key in the OS keychain' } },
  KimiStatus = { 'status', { desc = 'Kimi: show model, region, base URL and key source' } },
  KimiCancel = { 'cancel', { desc = 'Kimi: cancel the running requests' } },
  KimiNextEdit = { 'next_edit', { desc = 'Kimi: suggest the next edit at the cursor' } },
}

--- Ghost text (lua/kimi/ghost.lua) and conversations (lua/kimi/chat.lua): name -> { module, function, attributes }.
local more_commands = {
  KimiComplete = { 'kimi.ghost', 'complete', { desc = 'Kimi: complete at the cursor (ghost text)' } },
  KimiChat = { 'kimi.chat', 'open', { bang = true, desc = 'Kimi: open the conversation (! a new one)' } },
  KimiChatNew = { 'kimi.chat', 'new', { desc = 'Kimi: start a new conversation' } },
  KimiChats = { 'kimi.chat', 'pick', { desc = 'Kimi: list the conversations and open one' } },
  KimiChatExport = { 'kimi.chat', 'export', { desc = 'Kimi: the conversation as Markdown in a new buffer' } },
}

for name, def in pairs(more_commands) do
  local module, fn, attrs = def[1], def[2], def[3]
  vim.api.nvim_create_user_command(name, function(opts)
    require(module)[fn](opts)
  end, attrs)
end

--- The proposal commands (lua/kimi/proposal.lua): on a hunk that hunk, else the proposal the cursor is
--- in; a range takes the hunks on its lines, ! every proposal of the buffer.
local proposal_commands = {
  KimiAccept = { 'accept', { range = true, bang = true, desc = 'Kimi: accept the proposal (hunk) under the cursor' } },
  KimiReject = { 'reject', { range = true, bang = true, desc = 'Kimi: reject the proposal (hunk) under the cursor' } },
  KimiRefine = { 'refine', { nargs = '*', desc = 'Kimi: refine the proposal under the cursor [instruction]' } },
}

for name, def in pairs(proposal_commands) do
  local fn, attrs = def[1], def[2]
  vim.api.nvim_create_user_command(name, function(opts)
    require('kimi.proposal')[fn](opts)
  end, attrs)
end

for name, def in pairs(user_commands) do
  local fn, attrs = def[1], def[2]
  vim.api.nvim_create_user_command(name, function(opts)
    require('kimi.commands')[fn](opts)
  end, attrs)
end

vim.lsp.commands['kimi.enterApiKey'] = function(command, ctx)
  require('kimi.commands').enter_api_key(command, ctx)
end

vim.lsp.commands['kimi.showExplanation'] = function(command, ctx)
  require('kimi.commands').show_explanation(command, ctx)
end

vim.api.nvim_create_autocmd('LspAttach', {
  group = vim.api.nvim_create_augroup('kimi.attach', { clear = true }),
  desc = 'kimi: show the code lenses and the ghost text (setup({ codelens = false, completion = false }))',
  callback = function(ev)
    local client = vim.lsp.get_client_by_id(ev.data.client_id)
    if client and client.name == 'kimi' then
      require('kimi.codelens').attach(client, ev.buf)
      require('kimi.ghost').attach(client, ev.buf)
    end
  end,
})
