"""The sign-in hub, below both protocol engines: SSO sessions, pending authentication requests,
the acr / step-up policy and loading the signed-in user. No Flask, no protocol library (an
import-linter contract in pyproject.toml holds this); the web layer reads cookies and requests
and passes plain values (idp.web.sso).

idp.sso.sessions
    COOKIE                      name of the browser cookie (its value is kept nowhere)
    session_id_of(cookie)       the session id: a SHA-256 of the cookie value (None: no cookie)
    AUTHREQ_TTL                 seconds a pending AuthnRequest waits for the login
    SessionManager(svc, request_cache=None)
      .save_request(req)        store a pending AuthnRequest; ``{rid}`` in resume_url -> its id
      .load_request(rid)        the pending request, or None (left in place)
      .finish_request(rid)      take the pending request once (no replay)
      .create(uuid, amr, acr, auth_time=, user_agent=, ip=)  a new session -> NewSession
                                (.result: AuthnResult with the session id, .cookie: its value)
      .peek(sid)                the live session record, idle timer untouched
      .current_by_sid(sid)      the session as an AuthnResult, idle timer refreshed
      .add_relying_party(sid, key, info)  remember an RP served in the session
      .relying_parties(sid)     the RPs served in the session
      .destroy(sid, propagate=True)  end the session in the store, tell the logout listeners
      .end(sid, db=None)        destroy + drop the per-user index row (logout)
      .alive(sid)               whether the session (a published sid) is alive
      .cookie_attributes()      path / secure / samesite for setting and clearing COOKIE
      .logout_listeners         LogoutListeners told about every ended session
    LogoutListeners             .add(listener) at app set-up; .notify(record) on destroy
    session_manager(svc)        the app's one manager (Services.sso_sessions, built with Services)

idp.sso.users
    load_user(db, user_id=, uuid=)  a user by id or uuid
    find_user(db, login)        a user by username (any case) or e-mail address
    state_of(svc, user)         the account's state today (ACCOUNT_OK or why not)
    account_usable(svc, user)   state_of(...) == ACCOUNT_OK

idp.sso.stepup
    mfa_policy(svc)             the [mfa] policy, parsed once per app
    requirement(svc, db, user, req)  what the MFA policy asks of this user for req
    required_acr_values(svc, req, user_uuid)  [ACR_MFA] when a reused session must be MFA
    required_acr_for(svc, db, user, req)  the same for a caller holding the user
"""
