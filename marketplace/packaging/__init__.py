"""Integration packages: validation (manifest schema, Lua compile and static checks, OpenAPI
documents), the report with its stable codes, zip import/export and version diffs.

Entry points: ``validation.validate_version`` / ``validation.validate_package``,
``packages.read_package`` / ``packages.build_zip``, ``diffs.diff_versions``.
"""
