-- :KimiRefactor / :KimiFix / :KimiDocs edit the buffer through the server's workspace/applyEdit: each
-- edit is first drawn as a proposal, which :KimiAccept! accepts (tests/editors/nvim/proposal.lua has the rest).
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

--- Wait for the n-th finished action (its `$/progress` end comes after the edit was applied).
local function ended(n)
  H.wait(20000, n .. ' finished actions', function()
    local count = 0
    for _, p in ipairs(H.progress) do
      count = count + (p.kind == 'end' and 1 or 0)
    end
    return count >= n
  end)
  local proposal = require('kimi.proposal')
  H.wait(20000, 'proposal ' .. n, function()
    return #proposal.get(H.buf) > 0
  end)
  local before = H.lines()
  vim.cmd('KimiAccept!')
  H.wait(20000, 'proposal ' .. n .. ' to be applied', function()
    return #proposal.get(H.buf) == 0 and not vim.deep_equal(H.lines(), before)
  end)
end

H.run(function(out)
  H.start()

  H.select_lines(2, 5)
  vim.cmd("'<,'>KimiRefactor rename total to acc")
  ended(1)
  out.refactor = H.lines()

  -- Another tool's diagnostic on the line goes along to the model.
  local ns = vim.api.nvim_create_namespace('test-linter')
  vim.diagnostic.set(ns, 0, { { lnum = 8, col = 13, message = 'BUG marker left in code', source = 'lint' } })
  vim.cmd('9KimiFix')
  ended(2)
  out.fix = H.lines()

  vim.cmd('8,9KimiDocs')
  ended(3)
  out.docs = H.lines()

  vim.ui.input = function(opts, on_confirm)
    out.input_prompt = opts.prompt
    on_confirm('make it uppercase')
  end
  vim.cmd('1KimiRefactor')
  ended(4)
  out.uppercase = H.lines()

  out.errors = {}
  for _, n in ipairs(H.notifications) do
    if n.level >= vim.log.levels.WARN then
      table.insert(out.errors, n.msg)
    end
  end
end)
