"""Domain operations: one module per aggregate, one keyword-only, atomic function per
operation. The console, the management commands, the demo loader, the REST API and the
customers' pages call these."""
