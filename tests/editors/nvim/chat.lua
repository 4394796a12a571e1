-- Conversations: explain a selection, :KimiChat opens its thread as a Markdown buffer, a follow-up
-- typed below the marker (with a #file: path completed by the omnifunc) is sent with <CR> and its
-- answer streams into the buffer (no float); :KimiChats lists the thread; :KimiChatExport; a new
-- conversation (:KimiChat!) sent with :w.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

local api = vim.api

local function text(buf)
  return table.concat(api.nvim_buf_get_lines(buf or 0, 0, -1, false), '\n')
end

H.main(function(out)
  H.start()
  local float = require('kimi.float')
  local answers = H.count_answers()

  -- 1. Explain add()'s body; close the float.
  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiExplain")
  H.wait(20000, 'the explanation', function()
    return answers() == 1
  end)
  out.explained = float.current().body
  float.close()

  -- 2. :KimiChat opens that thread.
  local source = api.nvim_get_current_buf()
  vim.cmd('KimiChat')
  local chat = require('kimi.chat')
  local buf = api.nvim_get_current_buf()
  H.wait(10000, 'the thread in the chat buffer', function()
    return text(buf):find('fake-kimi', 1, true)
  end)
  out.chat = {
    name = api.nvim_buf_get_name(buf),
    filetype = vim.bo[buf].filetype,
    buftype = vim.bo[buf].buftype,
    omnifunc = vim.bo[buf].omnifunc,
    lines = api.nvim_buf_get_lines(buf, 0, -1, false),
    cursor = api.nvim_win_get_cursor(0),
    other_buffer = buf ~= source,
    attached = #vim.lsp.get_clients({ bufnr = buf }),
  }

  -- 3. Type a follow-up below the marker, completing a #file: path with <C-x><C-o>, and send it with <CR>.
  local claimed = {}
  local on_stream = chat.on_stream
  chat.on_stream = function(params, ctx)
    local mine = on_stream(params, ctx)
    if mine then
      claimed[#claimed + 1] = params.kind
    end
    return mine
  end
  H.type('i')
  H.type('and why not a dict? see #file:sam')
  H.type('<C-x><C-o>', 200)
  out.completed_line = api.nvim_get_current_line()
  H.type('<C-y><Esc>')
  out.prompt = chat.prompt(chat.get(buf))
  H.type('<CR>')
  out.sent_lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  H.wait(20000, 'the follow-up answer in the chat buffer', function()
    local t = text(buf)
    local at = t:find('## 2. and why not a dict?', 1, true)
    return not chat.get(buf).busy and at and t:find('fake-kimi', at, true)
  end)
  out.after = api.nvim_buf_get_lines(buf, 0, -1, false)
  out.claimed = claimed
  out.floats = #H.floats()
  out.float_answers = answers()

  -- 4. :KimiChats lists the thread; choosing it shows the same buffer.
  local items
  vim.ui.select = function(list, opts, on_choice)
    items = vim.tbl_map(opts.format_item, list)
    out.select_prompt = opts.prompt
    on_choice(list[1])
  end
  api.nvim_set_current_buf(source)
  vim.cmd('KimiChats')
  out.threads = H.wait(5000, 'the thread list', function()
    return items
  end)
  H.wait(5000, 'the chat buffer again', function()
    return api.nvim_get_current_buf() == buf
  end)

  -- 5. :KimiChatExport: the server's Markdown in a new buffer.
  vim.cmd('KimiChatExport')
  local export = H.wait(5000, 'the export', function()
    local b = api.nvim_get_current_buf()
    return b ~= buf and api.nvim_buf_get_name(b):find('kimi://export/', 1, true) and b
  end)
  out.export = { name = api.nvim_buf_get_name(export), lines = api.nvim_buf_get_lines(export, 0, -1, false) }

  -- 6. :KimiChat! starts a new conversation; :w sends its first question (no threadId).
  vim.cmd('KimiChat!')
  local fresh = api.nvim_get_current_buf()
  out.new_name = api.nvim_buf_get_name(fresh)
  out.new_lines = api.nvim_buf_get_lines(fresh, 0, -1, false)
  api.nvim_buf_set_lines(fresh, -2, -1, false, { 'what is a monoid?' })
  vim.cmd('write')
  H.wait(20000, 'the new conversation answer', function()
    local c = chat.get(fresh)
    return c and not c.busy and text(fresh):find('answers: what is a monoid?', 1, true)
  end)
  out.new_after = api.nvim_buf_get_lines(fresh, 0, -1, false)
  out.new_renamed = api.nvim_buf_get_name(fresh)
  out.new_modified = vim.bo[fresh].modified
  items = nil
  vim.ui.select = function(list, opts, on_choice)
    items = vim.tbl_map(opts.format_item, list)
    on_choice(nil)
  end
  vim.cmd('KimiChats')
  out.threads_after = H.wait(5000, 'the thread list again', function()
    return items
  end)
end)
