// Passkeys on the verification pages: the least script WebAuthn needs. Everything else on
// these pages works without JavaScript.
//
// A form with data-passkey="get" signs in (or gives the second step) with a passkey; one with
// data-passkey="create" registers a new one. Either asks the server for options (a POST with
// the form's anti-CSRF token to data-options), calls the browser's WebAuthn API, puts the
// answer as JSON into the form's "credential" field and submits the form like any other.
// Where the browser supports it, the sign-in form also offers passkeys in the username
// field's autofill (conditional mediation).
"use strict";
(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function fromB64url(s) {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  }

  function toB64url(buf) {
    let bin = "";
    for (const b of new Uint8Array(buf)) {
      bin += String.fromCharCode(b);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function options(form) {
    const body = new URLSearchParams({ csrf: form.elements.csrf.value });
    const res = await fetch(form.dataset.options, {
      method: "POST",
      body,
      credentials: "same-origin",
    });
    if (!res.ok) {
      throw new Error("options: " + res.status);
    }
    return res.json();
  }

  function send(form, credential) {
    form.elements.credential.value = JSON.stringify(credential);
    form.submit();
  }

  function failed(form, err) {
    if (err && err.name === "AbortError") {
      return;
    }
    const note = form.querySelector(".passkey-error");
    if (note) {
      note.hidden = false;
    }
  }

  async function get(form, mediation, signal) {
    const o = await options(form);
    if (signal && signal.aborted) {
      return;
    }
    const pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    for (const c of pk.allowCredentials || []) {
      c.id = fromB64url(c.id);
    }
    const request = { publicKey: pk, signal };
    if (mediation) {
      request.mediation = mediation;
    }
    const cred = await navigator.credentials.get(request);
    const r = cred.response;
    send(form, {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64url(r.authenticatorData),
        clientDataJSON: toB64url(r.clientDataJSON),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : null,
      },
      extensions: cred.getClientExtensionResults(),
    });
  }

  async function create(form) {
    const o = await options(form);
    const pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.user.id = fromB64url(pk.user.id);
    for (const c of pk.excludeCredentials || []) {
      c.id = fromB64url(c.id);
    }
    const cred = await navigator.credentials.create({ publicKey: pk });
    const r = cred.response;
    send(form, {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toB64url(r.attestationObject),
        clientDataJSON: toB64url(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined,
      },
      extensions: cred.getClientExtensionResults(),
    });
  }

  for (const form of document.querySelectorAll("form[data-passkey]")) {
    form.hidden = false;
    if (form.dataset.passkey === "create") {
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        create(form).catch((err) => failed(form, err));
      });
      continue;
    }
    // One ceremony at a time: the button's replaces the autofill's.
    let autofill = null;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (autofill) {
        autofill.abort();
        autofill = null;
      }
      get(form, null, undefined).catch((err) => failed(form, err));
    });
    if (
      form.dataset.autofill === "on" &&
      PublicKeyCredential.isConditionalMediationAvailable
    ) {
      PublicKeyCredential.isConditionalMediationAvailable().then((ok) => {
        if (ok && !autofill) {
          autofill = new AbortController();
          get(form, "conditional", autofill.signal).catch((err) => failed(form, err));
        }
      });
    }
  }
})();
