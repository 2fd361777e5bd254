// The live password checklist (templates/_forms.html, rules_hint): ticks each rule the new
// password already meets (li.met, and words for screen readers) as it is typed. Only a help:
// the server checks the password again and reports every rule it breaks beside the field.
// The checks mirror idp.core.policy.check_password.
(function () {
  "use strict";
  var SPECIALS = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ";

  function fold(text) {
    return (text || "").normalize("NFKC").toLowerCase();
  }

  function personalTokens(username, email, names) {
    var tokens = [username || ""];
    if (email) {
      var local = email.split("@")[0];
      tokens.push(local);
      local.replace(/[_-]/g, ".").split(".").forEach(function (t) { tokens.push(t); });
    }
    names.forEach(function (n) { if (n) tokens.push(n); });
    return tokens.filter(function (t) { return t.length >= 3; }).map(fold);
  }

  function valueOf(id) {
    var el = document.getElementById(id);
    return el ? el.value : "";
  }

  var checks = {
    min_length: function (pw, n) { return Array.from(pw).length >= n; },
    max_length: function (pw, n) { return pw.length > 0 && Array.from(pw).length <= n; },
    require_upper: function (pw) { return /\p{Lu}/u.test(pw); },
    require_lower: function (pw) { return /\p{Ll}/u.test(pw); },
    require_digit: function (pw) { return /\p{Nd}/u.test(pw); },
    require_special: function (pw) {
      return Array.from(pw).some(function (c) { return SPECIALS.indexOf(c) >= 0 || !/[\p{L}\p{N}]/u.test(c); });
    },
    personal: function (pw, n, box) {
      if (!pw) return false;
      var folded = fold(pw);
      var tokens = personalTokens(box.getAttribute("data-username") || valueOf("username"),
        valueOf("email"), [valueOf("given_name"), valueOf("family_name")]);
      return !tokens.some(function (t) { return folded.indexOf(t) >= 0; });
    },
  };

  document.querySelectorAll("[data-password-rules]").forEach(function (box) {
    var input = document.getElementById(box.getAttribute("data-password-rules"));
    if (!input) return;
    var met = box.getAttribute("data-label-met") || "(done)";
    var unmet = box.getAttribute("data-label-unmet") || "(not yet)";
    function update() {
      box.querySelectorAll("li[data-rule]").forEach(function (li) {
        var check = checks[li.getAttribute("data-rule")];
        if (!check) return;
        var ok = check(input.value, parseInt(li.getAttribute("data-n") || "0", 10), box);
        li.classList.toggle("met", ok);
        var state = li.querySelector(".state");
        if (state) state.textContent = ok ? met : unmet;
      });
    }
    input.addEventListener("input", update);
    ["username", "email", "given_name", "family_name"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.addEventListener("input", update);
    });
    update();
  });
})();
