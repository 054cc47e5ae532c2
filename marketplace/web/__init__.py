"""The customers' pages beyond the catalog and the accounts: their instances, the install
wizard, their devices. Server-rendered; every write goes through ``marketplace.services``
(the same functions as the console and the API), every read starts from a named queryset
or an access helper, so the tenant walls are the ones defined there."""
