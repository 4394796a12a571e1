-- :KimiAsk with a range, without one (about the file), and with the question asked by vim.ui.input.
local H = dofile(os.getenv('KIMI_TEST_HARNESS'))

H.run(function(out)
  H.start()
  local float = require('kimi.float')
  local answers = H.count_answers()
  local function answer(n)
    H.wait(20000, 'answer ' .. n, function()
      return answers() == n
    end)
    local cur = float.current()
    float.close()
    return { body = cur.body }
  end

  H.select_lines(1, 5)
  vim.cmd("'<,'>KimiAsk what does add return?")
  out.ranged = answer(1)

  vim.cmd('KimiAsk is this file tested?')
  out.file = answer(2)

  vim.ui.input = function(opts, on_confirm)
    out.input_prompt = opts.prompt
    on_confirm('why is broken() broken?')
  end
  vim.cmd('KimiAsk')
  out.prompted = answer(3)
end)
