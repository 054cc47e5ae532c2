"""Domain operations: one module per aggregate, one keyword-only, atomic function per
operation. The admin, the API, the web pages and the commands all call these."""
