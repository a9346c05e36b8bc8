"""The open platform: external columns run by third parties on their own servers.

An admin registers a column (its redirect URIs, the scopes it may ask for, its identity level); the
column signs residents in with the city's account through OpenID Connect (authorization code with
PKCE S256), on Authlib's OAuth 2.0 / OIDC building blocks and joserfc for the signed tokens.
See ``docs/openplatform.md`` for a column developer's view.
"""
