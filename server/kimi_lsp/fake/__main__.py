from kimi_lsp.fake.server import main

raise SystemExit(main())
