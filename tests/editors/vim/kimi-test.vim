" Drives Debian's Vim 9 + ALE against kimi-lsp, as a user would; run as the vimrc of `vim -N -u kimi-test.vim -i NONE
" --not-a-term FILE` (HOME and XDG_* in a temporary folder). Environment:
"   KIMI_TEST_SCENARIO  basics | unauthorized
"   KIMI_TEST_SERVER    the server command line (the tap in front of kimi-lsp), a JSON array
"   KIMI_TEST_BASE_URL  the fake Moonshot API
"   KIMI_TEST_OUT       where to write what was seen, as JSON
" Errors are caught and written to the output as "error", so pytest sees them.
set nocompatible
set nomore
set shortmess+=F
filetype plugin on
syntax off

" The user's configuration, as docs/editors.md gives it (ALE from Debian's vim-ale, kimi-lsp as an LSP linter) but
" with ALE's default g:ale_lsp_show_message_severity, as a new user has it: only errors are shown.
packadd! ale
let g:ale_linters = {'python': ['kimi']}
let g:ale_linters_explicit = 1
call ale#linter#Define('python', {
      \ 'name': 'kimi',
      \ 'lsp': 'stdio',
      \ 'executable': {b -> json_decode($KIMI_TEST_SERVER)[0]},
      \ 'command': {b -> join(map(json_decode($KIMI_TEST_SERVER), {_, a -> shellescape(a)}))},
      \ 'project_root': {b -> getcwd()},
      \ 'lsp_config': {'kimi': {'baseUrl': $KIMI_TEST_BASE_URL, 'previewEdits': 'never'}},
      \ })

let s:out = {}
let s:offered = []
let s:pick = ''

function! s:Wait(expr, seconds) abort
  let l:deadline = reltimefloat(reltime()) + a:seconds
  while !eval(a:expr) && reltimefloat(reltime()) < l:deadline
    sleep 50m
  endwhile
  return eval(a:expr)
endfunction

function! s:Messages() abort
  return execute('messages')
endfunction

" What the user sees: every row of the terminal (ALE `echo`es messages, which :messages does not keep).
function! s:Screen() abort
  redraw
  return join(map(range(1, &lines), {_, r -> join(map(range(1, &columns), {_, c -> screenstring(r, c)}), '')}), "\n")
endfunction

function! s:Windows() abort
  return map(range(1, winnr('$')), {_, w -> {'name': bufname(winbufnr(w)),
        \ 'filetype': getbufvar(winbufnr(w), '&filetype'), 'text': join(getbufline(winbufnr(w), 1, '$'), "\n")}})
endfunction

" ALE asks which action to run with input(): answer it as a user would, with the number of the one wanted.
function! s:Answer(message) abort
  let l:titles = []
  for l:line in split(a:message, "\n")
    let l:m = matchlist(l:line, '^\(\d\+\)) \(.*\)$')
    if !empty(l:m)
      call add(l:titles, l:m[2])
    endif
  endfor
  let s:offered = l:titles
  let l:i = 0
  for l:title in l:titles
    let l:i += 1
    if stridx(l:title, s:pick) >= 0
      return string(l:i)
    endif
  endfor
  return ''
endfunction

" Visual line mode over FIRST..LAST, then :'<,'>ALECodeAction, picking the title containing PICK.
function! s:CodeActionOnLines(first, last, pick) abort
  let s:pick = a:pick
  let s:offered = []
  execute 'normal! ' . a:first . 'GV' . a:last . "G\<Esc>"
  '<,'>ALECodeAction
  call s:Wait('!empty(s:offered)', 10)
endfunction

" The text of the preview window, where ALE shows hovers (and messages) longer than one line; '' when none is open.
function! s:Preview() abort
  for l:w in range(1, winnr('$'))
    if getwinvar(l:w, '&previewwindow')
      return join(getbufline(winbufnr(l:w), 1, '$'), "\n")
    endif
  endfor
  return ''
endfunction

" :ALEHover with the cursor on LINE, as a user does to read what Kimi keeps on the code there, asked again (the
" answer may still be on its way) until ALE's preview shows WANT and an answer that is complete. What it showed.
function! s:Hover(line, want, seconds) abort
  let l:deadline = reltimefloat(reltime()) + a:seconds
  let l:text = ''
  while reltimefloat(reltime()) < l:deadline
    silent! pclose
    call cursor(a:line, 1)
    ALEHover
    call s:Wait('!empty(s:Preview())', 1)
    let l:text = s:Preview()
    if stridx(l:text, a:want) >= 0 && l:text !~# 'still writing\|waiting for the first words'
      break
    endif
    sleep 200m
  endwhile
  return l:text
endfunction

function! s:Basics() abort
  call s:CodeActionOnLines(2, 4, 'Kimi: Refactor')
  let s:out.offered = s:offered
  " ALE declares workspace.applyEdit false, so the server sends no edit: the suggested code is kept on the
  " selected lines, and :ALEHover there shows it (ALE hides the server's info and warning messages by default).
  let s:out.hoverAfterRefactor = s:Hover(3, 'Suggested change', 15)
  let s:out.afterRefactor = join(getline(1, '$'), "\n") . "\n"
  " An explanation of `broken`: read with :ALEHover on the explained lines, for the same reason.
  silent! pclose
  messages clear
  let l:first = search('^def broken', 'nw')
  call s:CodeActionOnLines(l:first, l:first + 1, 'Kimi: Explain')
  let s:out.hoverAfterExplain = s:Hover(l:first, 'Kimi: Explain', 10)
  let s:out.messagesAfterExplain = s:Messages()
  let s:out.screenAfterExplain = s:Screen()
  let s:out.windowsAfterExplain = s:Windows()
  " A refactor with an instruction: the user types a `# kimi:` comment as the first line of what they select.
  " The suggestion is read with :ALEHover on the comment line, which only the new suggestion covers.
  silent! pclose
  call append(1, '    # kimi: rename total to acc')
  let s:out.beforeInstruction = join(getline(1, '$'), "\n") . "\n"
  call s:CodeActionOnLines(2, search('^    return total', 'nw'), 'Kimi: Refactor')
  let s:out.hoverAfterInstruction = s:Hover(2, 'acc', 15)
  let s:out.afterInstruction = join(getline(1, '$'), "\n") . "\n"
endfunction

function! s:Unauthorized() abort
  call s:CodeActionOnLines(2, 4, 'Kimi: Explain')
  call s:Wait('!empty(ale#engine#GetLoclist(bufnr("")))', 15)
  sleep 300m
  let s:out.messagesAfterExplain = s:Messages()
  let s:out.screenAfterExplain = s:Screen()
  let s:out.windowsAfterExplain = s:Windows()
  let s:out.loclist = ale#engine#GetLoclist(bufnr(''))
  " The quick fixes, with the cursor on the diagnostic (ALE sends it back then) and no selection.
  if !empty(s:out.loclist)
    let l:d = s:out.loclist[0]
    call cursor(l:d.lnum, max([l:d.col, 1]))
    let s:pick = 'How to set the API key'
    let s:offered = []
    messages clear
    ALECodeAction
    call s:Wait('!empty(s:offered)', 10)
    let s:out.quickFixes = s:offered
    call s:Wait('stridx(s:Screen(), "MOONSHOT_API_KEY") >= 0', 8)
    let s:out.messagesAfterKeyHelp = s:Messages()
    let s:out.screenAfterKeyHelp = s:Screen()
    let s:out.windowsAfterKeyHelp = s:Windows()
  endif
endfunction

function! s:Run() abort
  " Loaded now, so the stub below replaces ALE's prompt rather than being replaced by it.
  runtime autoload/ale/util.vim
  function! ale#util#Input(message, value, ...) abort
    return s:Answer(a:message)
  endfunction
  " ALE lints on entering the buffer, which starts the server: wait for it, as a user sees the buffer first.
  let s:out.started = s:Wait('has_key(g:ale_buffer_info, bufnr("")) && !ale#engine#IsCheckingBuffer(bufnr(""))', 10)
  let l:scenario = $KIMI_TEST_SCENARIO
  if l:scenario ==# 'basics'
    call s:Basics()
  elseif l:scenario ==# 'unauthorized'
    call s:Unauthorized()
  endif
endfunction

function! s:Main() abort
  try
    call s:Run()
  catch
    let s:out.error = v:exception . ' at ' . v:throwpoint
  endtry
  let s:out.messages = s:Messages()
  call writefile([json_encode(s:out)], $KIMI_TEST_OUT)
  qall!
endfunction

autocmd VimEnter * call timer_start(100, {-> s:Main()})
