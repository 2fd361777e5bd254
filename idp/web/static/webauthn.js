// Security keys and passkeys for the hosted pages (W3C WebAuthn). Same-origin, no build step.
// Three parts, each active when its element is on the page:
//   #passkey-login      /login: passkey button and conditional UI (autofill) -> JSON endpoints
//   #webauthn-mfa-form  second-factor step: assertion posted with the step's form
//   #webauthn-register  account page: register a new credential -> JSON endpoints
(function () {
  "use strict";

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromB64url(value) {
    const b64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(b64 + "===".slice((b64.length + 3) % 4));
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes.buffer;
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return Object.assign({}, d, { id: fromB64url(d.id) });
    });
  }

  // Browsers with WebAuthn Level 3 parse the server's JSON themselves; older ones get it here.
  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      user: Object.assign({}, json.user, { id: fromB64url(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    });
  }

  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") return cred.toJSON();
    const r = cred.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || null,
      clientExtensionResults: cred.getClientExtensionResults(),
      response: response,
    };
  }

  async function post(url, csrf, body) {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrf,
      },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try {
      data = await res.json();
    } catch (e) {
      data = {};
    }
    return { ok: res.ok, status: res.status, data: data };
  }

  function show(el, text) {
    el.textContent = text;
    el.hidden = false;
  }

  const supported = !!(window.PublicKeyCredential && navigator.credentials);

  // --- /login: passwordless --------------------------------------------------------------------

  function setUpPasskeyLogin(box) {
    if (!supported) return;
    box.hidden = false;
    const form = document.querySelector("form input[name=username]");
    const loginForm = form ? form.form : null;
    const field = function (name) {
      const el = loginForm ? loginForm.querySelector("input[name=" + name + "]") : null;
      return el ? el.value : "";
    };
    const error = box.querySelector("#passkey-login-error");
    let pending = null; // the conditional request, aborted when the button is used
    let picked = false; // a credential was chosen (button, or from the autofill list)

    async function signIn(conditional) {
      const opts = await post(box.dataset.optionsUrl, box.dataset.csrf, {
        r: field("r"),
        next: field("next"),
      });
      if (!opts.ok) throw new Error(opts.data.message || box.dataset.msgFailed);
      const request = { publicKey: requestOptions(opts.data) };
      if (conditional) {
        pending = new AbortController();
        request.mediation = "conditional";
        request.signal = pending.signal;
      }
      const cred = await navigator.credentials.get(request);
      picked = true; // from here on the person acted: failures are theirs to see
      const done = await post(box.dataset.verifyUrl, box.dataset.csrf, {
        credential: credentialJSON(cred),
      });
      if (!done.ok) throw new Error(done.data.message || box.dataset.msgFailed);
      window.location.assign(done.data.redirect);
    }

    function failed(e) {
      if (e && e.name === "AbortError") return; // replaced by the button's request
      if (e && e.name === "NotAllowedError") return; // the person cancelled
      // The browser's own messages are not in the page's language: ours replace them.
      const own = e && !(e instanceof DOMException) && e.message;
      show(error, own || box.dataset.msgFailed);
    }

    box.querySelector("#passkey-login-button").addEventListener("click", function () {
      error.hidden = true;
      picked = false;
      if (pending) pending.abort();
      pending = null;
      signIn(false).catch(failed);
    });

    if (PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        // The autofill request waits in the background: until the person picks a passkey
        // from it, its failures (no passkeys, an unusable RP ID...) are not theirs to see.
        if (available) signIn(true).catch(function (e) { if (picked) failed(e); });
      });
    }
  }

  // --- second factor ---------------------------------------------------------------------------

  function setUpSecondFactor(form) {
    const error = form.querySelector("#webauthn-mfa-error");
    const button = form.querySelector("#webauthn-mfa-button");
    if (!supported) {
      show(error, form.dataset.msgUnsupported);
      button.disabled = true;
      return;
    }
    const options = JSON.parse(document.getElementById("webauthn-mfa-options").textContent);
    button.addEventListener("click", async function () {
      error.hidden = true;
      try {
        const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
        form.querySelector("input[name=credential]").value = JSON.stringify(credentialJSON(cred));
        form.submit();
      } catch (e) {
        show(error, form.dataset.msgFailed);
      }
    });
  }

  // --- account page: register ------------------------------------------------------------------

  function setUpRegister(box) {
    const error = box.querySelector("#webauthn-register-error");
    const button = box.querySelector("#webauthn-register-button");
    if (!supported) {
      show(error, box.dataset.msgUnsupported);
      button.disabled = true;
      return;
    }
    button.addEventListener("click", async function () {
      error.hidden = true;
      button.disabled = true;
      try {
        const opts = await post(box.dataset.optionsUrl, box.dataset.csrf, {});
        if (!opts.ok) {
          if (opts.data.redirect) return window.location.assign(opts.data.redirect);
          throw new Error(opts.data.message || box.dataset.msgFailed);
        }
        const cred = await navigator.credentials.create({ publicKey: creationOptions(opts.data) });
        const done = await post(box.dataset.verifyUrl, box.dataset.csrf, {
          credential: credentialJSON(cred),
          name: box.querySelector("#webauthn-name").value,
        });
        if (!done.ok) throw new Error(done.data.message || box.dataset.msgFailed);
        window.location.assign(done.data.redirect);
      } catch (e) {
        const own = e && !(e instanceof DOMException) && e.message;
        show(error, own || box.dataset.msgFailed);
      } finally {
        button.disabled = false;
      }
    });
  }

  const login = document.getElementById("passkey-login");
  if (login) setUpPasskeyLogin(login);
  const mfa = document.getElementById("webauthn-mfa-form");
  if (mfa) setUpSecondFactor(mfa);
  const register = document.getElementById("webauthn-register");
  if (register) setUpRegister(register);
})();
