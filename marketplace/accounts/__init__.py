"""The customers' account pages: sign-up with an organization (through django-allauth,
which owns login, logout and password reset), the profile with personal API tokens, and
the organization page with its members and invitations. Every write is a service call
(``services.organizations``, ``services.tokens``); docs/accounts.md tells the story."""
