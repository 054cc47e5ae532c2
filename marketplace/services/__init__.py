"""Domain operations: one module per aggregate, one keyword-only, atomic function per
operation. The console, the management commands and the demo loader call these; the REST
API (issue 11) and the customers' pages (issue 12) are not built yet."""
