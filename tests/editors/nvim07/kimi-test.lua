-- Drives Debian's Neovim 0.7 (no vim.lsp.start, no vim.lsp.config) against kimi-lsp with its built-in client, as a
-- user's init.lua would: `nvim --clean --headless -c "luafile kimi-test.lua" FILE`. Environment:
--   KIMI_TEST_SCENARIO  basics | unauthorized
--   KIMI_TEST_SERVER    the server command line (the tap in front of kimi-lsp), a JSON array
--   KIMI_TEST_BASE_URL  the fake Moonshot API
--   KIMI_TEST_OUT       where to write what was seen, as JSON
-- Errors are caught and written to the output as "error", so pytest sees them.
local out = { shown = {} }

local function write_out()
  local f = assert(io.open(os.getenv("KIMI_TEST_OUT"), "w"))
  f:write(vim.fn.json_encode(out))
  f:close()
end

-- What the user is shown: window/showMessage is written with nvim_out_write (echo area, :messages) or as an error;
-- vim.notify for the rest. Record each, and still show it.
for _, name in ipairs({ "nvim_out_write", "nvim_err_write", "nvim_err_writeln", "nvim_echo" }) do
  local original = vim.api[name]
  vim.api[name] = function(...)
    local args = { ... }
    local text = name == "nvim_echo" and table.concat(vim.tbl_map(function(c) return c[1] end, args[1]), "")
      or args[1]
    table.insert(out.shown, { via = name, text = text })
    return original(...)
  end
end
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(out.shown, { via = "vim.notify", text = msg, level = level })
  return notify(msg, level, opts)
end

local function shown_text()
  return table.concat(vim.tbl_map(function(s) return s.text end, out.shown), "\n")
end

-- The user picks an action from vim.ui.select by its title.
local pick, offered = nil, nil
vim.ui.select = function(items, opts, on_choice)
  offered = {}
  local chosen, index
  for i, item in ipairs(items) do
    local title = opts.format_item and opts.format_item(item) or tostring(item)
    table.insert(offered, title)
    if not chosen and pick and title:find(pick, 1, true) then
      chosen, index = item, i
    end
  end
  on_choice(chosen, index)
end

local function wait(seconds, predicate)
  return vim.wait(seconds * 1000, predicate, 50)
end

-- `V` over FIRST..LAST, then the range code action a user maps to <leader>ca in visual mode (0.7's API).
local function code_action_on_lines(first, last, title)
  pick, offered = title, nil
  vim.cmd(("normal! %dGV%dG\27"):format(first, last))
  vim.lsp.buf.range_code_action()
  wait(10, function() return offered ~= nil end)
  return offered
end

local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n"
end

local function basics(buf)
  out.offered = code_action_on_lines(2, 4, "Kimi: Refactor")
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  wait(15, function() return vim.api.nvim_buf_get_changedtick(buf) ~= tick end)
  vim.wait(200)
  out.afterRefactor = buffer_text(buf)
  local first = vim.fn.search("^def broken", "nw")
  out.shown = {}
  code_action_on_lines(first, first + 1, "Kimi: Explain")
  wait(10, function() return shown_text():find("fake-kimi", 1, true) ~= nil end)
  out.shownAfterExplain = out.shown
  out.messagesAfterExplain = vim.fn.execute("messages")
  -- A refactor with an instruction: the user types a `# kimi:` comment as the first line of what they select.
  vim.api.nvim_buf_set_lines(buf, 1, 1, false, { "    # kimi: rename total to acc" })
  out.beforeInstruction = buffer_text(buf)
  code_action_on_lines(2, vim.fn.search("^    return total", "nw"), "Kimi: Refactor")
  tick = vim.api.nvim_buf_get_changedtick(buf)
  wait(15, function() return vim.api.nvim_buf_get_changedtick(buf) ~= tick end)
  vim.wait(200)
  out.afterInstruction = buffer_text(buf)
end

local function unauthorized(buf)
  code_action_on_lines(2, 4, "Kimi: Explain")
  wait(15, function() return #vim.diagnostic.get(buf) > 0 end)
  out.shownAfterExplain = out.shown
  out.diagnostics = vim.tbl_map(function(d)
    return { message = d.message, source = d.source, code = d.code, lnum = d.lnum, col = d.col,
             end_lnum = d.end_lnum, end_col = d.end_col }
  end, vim.diagnostic.get(buf))
  -- The quick fixes, with the cursor on the diagnostic, as `vim.lsp.buf.code_action()` (normal mode) asks.
  local d = vim.diagnostic.get(buf)[1]
  if d then
    vim.api.nvim_win_set_cursor(0, { d.lnum + 1, d.col })
    pick, offered, out.shown = "How to set the API key", nil, {}
    vim.lsp.buf.code_action()
    wait(10, function() return offered ~= nil end)
    out.quickFixes = offered
    wait(8, function() return shown_text():find("MOONSHOT_API_KEY", 1, true) ~= nil end)
    out.shownAfterKeyHelp = out.shown
  end
end

local function run()
  local cmd = vim.fn.json_decode(os.getenv("KIMI_TEST_SERVER"))
  local buf = vim.api.nvim_get_current_buf()
  -- The user's configuration, as docs/editors.md gives it for Neovim before 0.11.
  local settings = { kimi = { baseUrl = os.getenv("KIMI_TEST_BASE_URL"), previewEdits = "never" } }
  local id = vim.lsp.start_client({
    name = "kimi",
    cmd = cmd,
    root_dir = vim.fn.getcwd(),
    init_options = settings,
    settings = settings,
  })
  vim.lsp.buf_attach_client(buf, id)
  local client = vim.lsp.get_client_by_id(id)
  out.started = wait(10, function() return client.initialized end)
  if not out.started then error("kimi-lsp did not initialize") end
  local scenario = os.getenv("KIMI_TEST_SCENARIO")
  if scenario == "basics" then basics(buf) elseif scenario == "unauthorized" then unauthorized(buf) end
  client.stop()
  wait(3, function() return client.is_stopped() end)
end

local ok, err = xpcall(run, debug.traceback)
if not ok then out.error = tostring(err) end
write_out()
vim.cmd("qall!")
