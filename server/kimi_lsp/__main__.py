from kimi_lsp.cli import main

raise SystemExit(main())
