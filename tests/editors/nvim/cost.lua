-- What an answer used and cost: the float's footer when an explanation ends, the echo when an edit
-- lands, :KimiStatus's session and balance lines, and a request queued behind the rate limit
-- (kimi.maxConcurrentRequests = 1) shows the server's "queued: …" status while it waits.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

--- The text of a window's footer (a string, or a list of [text, hl] chunks).
local function footer_text(win)
  local footer = vim.api.nvim_win_get_config(win).footer
  if type(footer) == 'table' then
    local parts = {}
    for _, chunk in ipairs(footer) do
      parts[#parts + 1] = type(chunk) == 'table' and chunk[1] or tostring(chunk)
    end
    return table.concat(parts)
  end
  return footer or ''
end

H.run(function(out)
  H.start({ maxConcurrentRequests = 1 })
  local float = require('kimi.float')

  local dones, statuses, finished, starts = {}, {}, 0, 0
  local on_stream = float.on_stream
  float.on_stream = function(err, params, ctx)
    if params.kind == 'start' then
      starts = starts + 1
    elseif params.kind == 'done' then
      dones[#dones + 1] = params
    elseif params.kind == 'status' then
      statuses[#statuses + 1] = params.text
    end
    return on_stream(err, params, ctx)
  end
  local finish = float.finish
  float.finish = function(result, ctx)
    finish(result, ctx)
    finished = finished + 1
  end

  -- 1. An explanation: the footer ends with the server's spent line.
  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiExplain")
  H.wait(20000, 'the explanation', function()
    return finished == 1
  end)
  local cur = assert(float.current())
  out.footer = H.wait(5000, 'the footer with the cost', function()
    local text = footer_text(cur.win)
    return text:find('tokens', 1, true) and text
  end)
  out.explain_done = dones[1]
  float.close()

  -- 2. An edit: no float; the same line is echoed when it lands.
  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiRefactor rename total to acc")
  out.edit_message = H.wait(20000, 'the edit end message', function()
    local n = H.notified('Refactor · ')[1]
    return n and n.msg
  end)
  out.edit_done = dones[2]

  -- 3. :KimiStatus: what this session used and cost, and the balance.
  vim.cmd('KimiStatus')
  out.status = H.wait(20000, 'the status', function()
    local n = H.notified('kimi-lsp ')[1]
    return n and n.msg
  end)

  -- 4. Two explanations at once with one request allowed in flight: the second waits, and its float
  -- says so with the server's status.
  local before, started = finished, starts
  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiExplain")
  H.select_lines(8, 9)
  vim.cmd("'<,'>KimiExplain")
  -- The waiting one starts last (the other is announced when it is sent): its float is the one shown.
  local second = H.wait(20000, 'both floats', function()
    local c = float.current()
    return starts >= started + 2 and c and c.win and c
  end)
  out.queued_footer = H.wait(20000, 'a queued status in the footer', function()
    local text = vim.api.nvim_win_is_valid(second.win) and footer_text(second.win) or ''
    return text:find('queued', 1, true) and text
  end)
  H.wait(30000, 'both explanations', function()
    return finished >= before + 2
  end)
  out.statuses = statuses
end)
