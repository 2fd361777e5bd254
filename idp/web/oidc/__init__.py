"""The OIDC / OAuth 2.0 routes, thin: each reads the Flask request into plain data
(``respond.plain_request``), calls the engine (``idp.oidc``) and turns its typed result into a
response (``respond.to_response``).

authorize       /oauth2/authorize, /oauth2/authorize/resume
consent         /oauth2/consent (the page, and the account page's consent list)
token           /oauth2/token, /oauth2/par, /oauth2/introspect, /oauth2/revoke
userinfo        /oauth2/userinfo
logout          /oauth2/logout (and the back-channel logout listener)
registration    /oauth2/register, /oauth2/register/<client_id>
discovery       the OIDC metadata merged into the well-known documents
"""
