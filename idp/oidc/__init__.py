"""The OpenID Provider / OAuth 2.0 authorization server engine, on authlib. No web framework
(an import-linter contract in pyproject.toml holds this): each endpoint function takes the
services and plain request data and returns a typed result; the routes in ``idp.web.oidc``
read the Flask request into an ``HttpRequest`` and turn the result into a response.

idp.oidc.http
    HttpRequest(method, uri, headers, query, form, content_type, content_length, json)
                                one request as plain data; .values / .args / .post_form()
    Headers(items)              header names looked up in any case
    Values(lists)               name -> values; [name] / get give the first, getlist all
    PlainOAuth2Request(req), PlainJsonRequest(req)  authlib's requests over an HttpRequest
idp.oidc.results
    _(msgid, **params) -> Message   a text for people, translated by the web layer
    JsonResult(status, body, headers), BodyResult(status, body, content_type, headers)
    Redirect(location, status, no_store), FormPost(action, fields)
    ErrorPage(title, message, reference, status)   a refusal shown, never redirected
    ConsentPrompt(rid, client, user, scopes, claims)  what the consent page asks
    LogoutConfirm(client_id, client_name), LoggedOut(frames, target)
idp.oidc.server
    engine(svc)                 the worker's Engine (authlib server, signer, token logic)
idp.oidc.endpoints
    token(svc, req), introspect(svc, req), revoke(svc, req)   RFC 6749 §3.2, 7662, 7009
idp.oidc.userinfo
    userinfo(svc, req)          OIDC Core §5.3
idp.oidc.authorize
    authorize(svc, req, session_id, origin=), resume(svc, rid, session_id, origin=)
    process(svc, params, session_id, origin=, accepted_auth_time=None, consent_given=False)
    consent_prompt(svc, rid, session_id), answer_consent(svc, prompt, session_id, approve, origin=)
    (origin: idp.sso.network.Origin, the client's address for the network rules)
    error_page(message, status=400)
    list_consents(svc, user), withdraw_consent(svc, user, key), remember_consent(...)
idp.oidc.logout
    listen(svc)                 every ended SSO session reaches propagate (once per app)
    check_single_valued(values), refuse(message)
    end_session(svc, values, session_id) -> ErrorPage | LogoutConfirm | LoggedOut
    logout(svc, session_id, redirect_uri=None, state=None) -> LoggedOut
    propagate(svc, record), logout_token(...), deliver(...)   back-channel logout
idp.oidc.registration
    register(svc, req), manage(svc, req, client_id)   RFC 7591, RFC 7592
idp.oidc.discovery
    metadata(issuer, oidc, mtls=)   OIDC Discovery §3 / RFC 8414 §2
idp.oidc.dpop
    verify_proof(svc, value, method=, htu=, access_token=) -> Proof   RFC 9449 §4.3 checks
    new_nonce(svc), nonce_valid(svc, nonce), nonce_headers(svc)       RFC 9449 §8 nonces
idp.oidc.mtls
    certificate(value), thumbprint(cert), thumbprint_of(value)       RFC 8705 §3.1 x5t#S256
idp.oidc.sender
    token_request(svc, req)     the token endpoint's request with the DPoP / certificate keys
    require_constraint, cnf_for, check_code_binding, check_refresh_binding   binding tokens
    Presentation, check_holder(svc, claims, scheme, token, shown)   the checks at resources
idp.oidc.claims
    user_claims(eng, ...), claims_release(eng, ...)   OIDC Core §5.4, §5.5
"""
