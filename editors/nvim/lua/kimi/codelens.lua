--- The code lenses kimi-lsp puts above explained code ("Kimi: explained · hover to read | re-run |
--- dismiss"), shown without any user config: Neovim 0.11 fetches lenses only when asked, so the
--- plugin asks for the kimi client's lenses of a buffer
---
--- - when kimi attaches to it, on |BufEnter| and on |InsertLeave|;
--- - after each `kimi/stream` `done` of a request on it (a new or failed explanation);
--- - when the server sends `workspace/codeLens/refresh` (lsp/kimi.lua advertises support for it),
---   which it does after a dismiss or clear, and when an edit moves or drops an explanation.
---
--- Only the kimi client's lenses are fetched (a `textDocument/codeLens` request to that client,
--- shown with |vim.lsp.codelens.on_codelens()|); other servers' lenses are left to the user.
--- `require('kimi').setup({ codelens = false })` turns all of this off.
local api = vim.api

local M = {}

--- Whether the plugin fetches the kimi lenses (`setup({ codelens = ... })`).
M.enabled = true

local group = api.nvim_create_augroup('kimi.codelens', { clear = true })

---@type table<integer, {busy: boolean, again: boolean}> bufnr -> request state
local state = {}
---@type table<string, string> 'client_id:requestId' -> uri, from `kimi/stream` `start`
local request_uris = {}

---@param bufnr integer
---@return vim.lsp.Client[]
local function kimi_clients(bufnr)
  return vim.lsp.get_clients({
    name = require('kimi.util').name,
    bufnr = bufnr,
    method = 'textDocument/codeLens',
  })
end

--- Fetch and show the kimi client's lenses of `bufnr` (at most one request per buffer at a time:
--- a refresh asked for meanwhile runs when it returns, so the last state always wins).
---@param bufnr integer
---@param force? boolean even with `codelens = false` (lenses the user fetched)
function M.refresh(bufnr, force)
  if not (M.enabled or force) or not api.nvim_buf_is_loaded(bufnr) then
    return
  end
  local s = state[bufnr]
  if not s then
    s = { busy = false, again = false }
    state[bufnr] = s
  end
  if s.busy then
    s.again = true
    return
  end
  local codelens = vim.lsp.codelens
  if type(codelens.on_codelens) ~= 'function' then
    codelens.refresh({ bufnr = bufnr }) -- a Neovim without it: every client's lenses
    return
  end
  local params = { textDocument = vim.lsp.util.make_text_document_params(bufnr) }
  for _, client in ipairs(kimi_clients(bufnr)) do
    s.busy = true
    local sent = client:request('textDocument/codeLens', params, function(err, result, ctx)
      s.busy = false
      if (M.enabled or force) and api.nvim_buf_is_loaded(bufnr) then
        codelens.on_codelens(err, result, ctx)
      end
      if s.again then
        s.again = false
        M.refresh(bufnr, force)
      end
    end, bufnr)
    if not sent then
      s.busy = false
    end
  end
end

--- Start showing the lenses of `bufnr` (kimi just attached to it).
---@param client vim.lsp.Client
---@param bufnr integer
function M.attach(client, bufnr)
  if not M.enabled or not client:supports_method('textDocument/codeLens', bufnr) then
    return
  end
  api.nvim_clear_autocmds({ group = group, buffer = bufnr })
  api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave' }, {
    group = group,
    buffer = bufnr,
    desc = 'kimi: refresh the code lenses',
    callback = function()
      M.refresh(bufnr)
    end,
  })
  api.nvim_create_autocmd('LspDetach', {
    group = group,
    buffer = bufnr,
    desc = 'kimi: stop refreshing the code lenses',
    callback = function(ev)
      local detached = vim.lsp.get_client_by_id(ev.data.client_id)
      if detached and detached.name == require('kimi.util').name then
        api.nvim_clear_autocmds({ group = group, buffer = bufnr })
        state[bufnr] = nil
      end
    end,
  })
  M.refresh(bufnr)
end

--- Turn the lenses on or off, for the buffers kimi is attached to now and later.
---@param enabled boolean
function M.enable(enabled)
  M.enabled = enabled ~= false
  for _, client in ipairs(vim.lsp.get_clients({ name = require('kimi.util').name })) do
    for bufnr in pairs(client.attached_buffers) do
      if M.enabled then
        M.attach(client, bufnr)
      else
        api.nvim_clear_autocmds({ group = group, buffer = bufnr })
        state[bufnr] = nil
        vim.lsp.codelens.clear(client.id, bufnr)
      end
    end
  end
end

---@param client_id integer
---@param uri string
---@return integer?
local function buffer_of(client_id, uri)
  local client = vim.lsp.get_client_by_id(client_id)
  for bufnr in pairs(client and client.attached_buffers or {}) do
    if vim.uri_from_bufnr(bufnr) == uri then
      return bufnr
    end
  end
end

--- `kimi/stream` `start` and `done` (from lua/kimi/float.lua): a finished request refreshes the
--- lenses of the buffer it ran on.
---@param params table
---@param ctx lsp.HandlerContext
function M.on_stream(params, ctx)
  local k = tostring(ctx.client_id) .. ':' .. tostring(params.requestId)
  if params.kind == 'start' then
    if type(params.uri) == 'string' then
      request_uris[k] = params.uri
    end
  elseif params.kind == 'done' then
    local uri = request_uris[k]
    request_uris[k] = nil
    local bufnr = uri and buffer_of(ctx.client_id, uri)
    if bufnr then
      M.refresh(bufnr)
    end
  end
end

--- The server's `workspace/codeLens/refresh`: refresh the kimi buffers shown in a window (the
--- others refresh on |BufEnter|), not the one being typed in (it refreshes on |InsertLeave|).
---@param ctx lsp.HandlerContext
function M.on_refresh(ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if not (M.enabled and client) then
    return
  end
  local typing = vim.fn.mode():match('^[iR]') and api.nvim_get_current_buf() or nil
  for bufnr in pairs(client.attached_buffers) do
    if bufnr ~= typing and vim.fn.bufwinid(bufnr) ~= -1 then
      M.refresh(bufnr)
    end
  end
end

--- Whether `bufnr` shows kimi lenses (fetched by the plugin or by the user).
---@param bufnr integer
function M.shown(bufnr)
  for _, lens in ipairs(vim.lsp.codelens.get(bufnr)) do
    if lens.command and type(lens.command.command) == 'string' and lens.command.command:find('^kimi%.') then
      return true
    end
  end
  return false
end

return M
