"""The package contract (marketplace/packaging/contract.py) is the one list of ctx functions
and permissions: the manifest schema, the static checker and the runtime agree with it."""
from __future__ import annotations

import pytest

from marketplace.packaging import contract, lua
from marketplace.packaging.manifest import manifest_schema


def test_the_manifest_schema_lists_the_contract_permissions():
    enum = manifest_schema()["properties"]["permissions"]["items"]["enum"]
    assert enum == list(contract.PERMISSIONS)


def test_every_permission_is_needed_by_a_function_or_widens_one():
    needed = {function.permission for function in contract.FUNCTIONS}
    assert needed | {contract.SQL_WRITE} == set(contract.PERMISSIONS)
    assert all(function.permission in contract.PERMISSIONS for function in contract.FUNCTIONS)


@pytest.mark.parametrize("function", contract.FUNCTIONS, ids=lambda f: f.name)
def test_the_static_checker_asks_for_the_contract_permission(function):
    assert lua.resolve_ctx(list(function.path)) == (True, (function.permission,))


def test_the_static_checker_knows_no_function_outside_the_contract():
    def leaves(node, prefix=()):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, prefix + (key,))
            elif value != lua.DATA:
                yield ".".join(prefix + (key,))

    assert set(leaves(lua.CTX_API)) == set(contract.BY_NAME)
