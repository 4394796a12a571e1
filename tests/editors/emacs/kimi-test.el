;;; kimi-test.el --- drive Debian's Emacs + eglot against kimi-lsp, as a user would  -*- lexical-binding: t -*-

;; Run: emacs --batch -l kimi-test.el (HOME and XDG_* in a temporary folder). Environment:
;;   KIMI_TEST_SCENARIO  basics | unauthorized | slow
;;   KIMI_TEST_FILE      the Python file to open
;;   KIMI_TEST_SERVER    the server command line, as a JSON array (the tap in front of kimi-lsp)
;;   KIMI_TEST_BASE_URL  the fake Moonshot API
;;   KIMI_TEST_OUT       where to write what was seen, as JSON
;; Everything that can go wrong is caught and written to the output as "error", so pytest sees it.

(require 'package)
(package-initialize)                    ; Debian's elpa-eglot lives in /usr/share/emacs/site-lisp/elpa
(require 'eglot)
(require 'json)
(require 'python)
(require 'cl-lib)

(defvar kimi-test-out nil "Alist of results, written as JSON at the end.")
(defvar kimi-test-scenario (getenv "KIMI_TEST_SCENARIO"))

(defun kimi-test-put (key value)
  (setq kimi-test-out (cons (cons key value) (assq-delete-all key kimi-test-out))))

(defun kimi-test-write ()
  (with-temp-file (getenv "KIMI_TEST_OUT")
    (insert (json-encode kimi-test-out))))

(defun kimi-test-messages ()
  (with-current-buffer (messages-buffer) (buffer-substring-no-properties (point-min) (point-max))))

(defun kimi-test-wait (pred seconds)
  "Let Emacs process server output until PRED is non-nil or SECONDS pass; PRED's value."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall pred))) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    value))

;; The user's configuration, as docs/editors.md gives it.
(setq eglot-server-programs
      `((python-mode . ,(append (json-parse-string (getenv "KIMI_TEST_SERVER") :array-type 'list) nil))))
(setq-default eglot-workspace-configuration
              `(:kimi (:baseUrl ,(getenv "KIMI_TEST_BASE_URL") :previewEdits "never")))
;; A real user answers eglot's "Server wants to edit ... Proceed?" with y; batch mode cannot, so do not ask.
(setq eglot-confirm-server-initiated-edits nil)
(setq eglot-sync-connect 10)

(defun kimi-test-pick (title-part)
  "Run eglot-code-actions on the region as M-x would, choosing the action whose title contains TITLE-PART.
Returns the titles that were offered."
  (let (offered)
    (cl-letf (((symbol-function 'completing-read)
               (lambda (_prompt collection &rest _)
                 (setq offered (mapcar #'car collection))
                 (or (cl-find-if (lambda (title) (string-search title-part title)) offered)
                     (error "no action containing %S among %S" title-part offered)))))
      ;; A keyboard event, so eglot asks with completing-read rather than a mouse menu.
      (let ((last-nonmenu-event ?\r))
        (call-interactively #'eglot-code-actions)))
    offered))

(defun kimi-test-select-lines (first last)
  "Select whole lines FIRST..LAST (1-based) as a user does: C-a on FIRST, C-SPC, C-n past LAST."
  (transient-mark-mode 1)
  (goto-char (point-min))
  (forward-line (1- first))
  (push-mark (point) t t)
  (forward-line (1+ (- last first)))
  (activate-mark))

(defun kimi-test-line-of (regexp)
  "The 1-based line of the first match of REGEXP."
  (save-excursion (goto-char (point-min)) (re-search-forward regexp) (line-number-at-pos)))

(defun kimi-test-run ()
  (find-file (getenv "KIMI_TEST_FILE"))
  (python-mode)
  (eglot-ensure)
  (run-hooks 'post-command-hook)         ; eglot-ensure connects after the next command
  (kimi-test-put 'started (and (kimi-test-wait (lambda () eglot--managed-mode) 15) t))
  (let ((server (eglot-current-server)))
    (unless server (error "eglot did not connect"))
    (pcase kimi-test-scenario
      ("basics" (kimi-test-basics))
      ("unauthorized" (kimi-test-unauthorized server))
      ("slow" (kimi-test-slow)))))

(defun kimi-test-basics ()
  ;; A refactor from a line-wise selection (lines 2-4 of the sample).
  (kimi-test-select-lines 2 4)
  (kimi-test-put 'regionText (buffer-substring-no-properties (region-beginning) (region-end)))
  (let ((before (buffer-string)))
    (kimi-test-put 'offered (vconcat (kimi-test-pick "Kimi: Refactor")))
    (kimi-test-wait (lambda () (not (equal before (buffer-string)))) 15)
    (kimi-test-put 'afterRefactor (buffer-substring-no-properties (point-min) (point-max))))
  ;; An explanation of `broken' (two lines, below the refactor's new line): whatever the user is shown, in full.
  (deactivate-mark)
  (kimi-test-select-lines (kimi-test-line-of "^def broken") (1+ (kimi-test-line-of "^def broken")))
  (let ((mark (with-current-buffer (messages-buffer) (point-max))))
    (kimi-test-pick "Kimi: Explain")
    (kimi-test-wait (lambda () (with-current-buffer (messages-buffer)
                                 (string-search "fake-kimi" (buffer-substring mark (point-max)))))
                    15)
    (kimi-test-put 'echoAfterExplain (current-message))
    (kimi-test-put 'messagesAfterExplain
                   (with-current-buffer (messages-buffer) (buffer-substring-no-properties mark (point-max)))))
  ;; A refactor with an instruction: the user types a `# kimi:' comment as the first line of what they select.
  (deactivate-mark)
  (goto-char (point-min))
  (forward-line 1)
  (insert "    # kimi: rename total to acc\n")
  (kimi-test-put 'beforeInstruction (buffer-substring-no-properties (point-min) (point-max)))
  (kimi-test-select-lines 2 (kimi-test-line-of "^    return total"))
  (let ((before (buffer-string)))
    (kimi-test-pick "Kimi: Refactor")
    (kimi-test-wait (lambda () (not (equal before (buffer-string)))) 15)
    (kimi-test-put 'afterInstruction (buffer-substring-no-properties (point-min) (point-max))))
  (kimi-test-put 'buffers (vconcat (mapcar #'buffer-name (buffer-list)))))

(defun kimi-test-unauthorized (_server)
  (kimi-test-select-lines 2 4)
  (let ((mark (with-current-buffer (messages-buffer) (point-max))))
    (condition-case err (kimi-test-pick "Kimi: Explain")
      (error (kimi-test-put 'explainError (error-message-string err))))
    (kimi-test-wait (lambda () (flymake-diagnostics)) 15)
    (kimi-test-put 'messagesAfterExplain
                   (with-current-buffer (messages-buffer) (buffer-substring-no-properties mark (point-max)))))
  (kimi-test-put 'diagnostics
                 (vconcat (mapcar (lambda (d) (list (cons 'text (flymake-diagnostic-text d))
                                                    (cons 'beg (flymake-diagnostic-beg d))
                                                    (cons 'end (flymake-diagnostic-end d))))
                                  (flymake-diagnostics))))
  ;; The quick fixes, asked for at the diagnostic as M-x eglot-code-actions with the cursor on it.
  (deactivate-mark)
  (let ((diag (car (flymake-diagnostics))))
    (when diag
      (goto-char (flymake-diagnostic-beg diag))
      (let ((actions (eglot-code-actions (flymake-diagnostic-beg diag) (flymake-diagnostic-end diag))))
        (kimi-test-put 'quickFixes (vconcat (mapcar (lambda (a) (plist-get a :title)) actions))))
      (let ((mark (with-current-buffer (messages-buffer) (point-max))))
        (condition-case err (kimi-test-pick "How to set the API key")
          (error (kimi-test-put 'keyHelpError (error-message-string err))))
        (kimi-test-wait (lambda () (with-current-buffer (messages-buffer)
                                     (string-search "MOONSHOT_API_KEY" (buffer-substring mark (point-max)))))
                        10)
        (kimi-test-put 'messagesAfterKeyHelp
                       (with-current-buffer (messages-buffer) (buffer-substring-no-properties mark (point-max))))))))

(defun kimi-test-slow ()
  ;; The fake waits longer than eglot's 10 s request time-out before its first token. How long the command keeps
  ;; Emacs waiting is how long the user cannot type: eglot runs workspace/executeCommand with jsonrpc-request.
  (kimi-test-select-lines 2 4)
  (let ((mark (with-current-buffer (messages-buffer) (point-max)))
        (started (float-time))
        (before (buffer-string)))
    (condition-case err (kimi-test-pick "Kimi: Refactor")
      (error (kimi-test-put 'refactorError (error-message-string err))))
    (kimi-test-put 'commandReturnedAfter (- (float-time) started))
    (kimi-test-wait (lambda () (not (equal before (buffer-string)))) 25)
    (kimi-test-put 'editedAfter (- (float-time) started))
    (kimi-test-put 'afterRefactor (buffer-substring-no-properties (point-min) (point-max)))
    (kimi-test-put 'messagesAfterRefactor
                   (with-current-buffer (messages-buffer) (buffer-substring-no-properties mark (point-max))))))

(condition-case err
    (kimi-test-run)
  (error (kimi-test-put 'error (error-message-string err))))
(kimi-test-put 'messages (kimi-test-messages))
(kimi-test-write)
(ignore-errors (let ((server (eglot-current-server))) (when server (eglot-shutdown server))))
(kill-emacs 0)
