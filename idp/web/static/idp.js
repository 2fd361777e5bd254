// The few behaviours every page shares; each is a progressive enhancement (the page works
// without it). Loaded as a same-origin file so the Content-Security-Policy needs no inline code.
// Translated words come from data- attributes that base.html sets on <body>.
(function () {
  "use strict";
  var body = document.body;
  var words = {
    show: body.getAttribute("data-label-show") || "Show",
    hide: body.getAttribute("data-label-hide") || "Hide",
    showPassword: body.getAttribute("data-label-show-password") || "Show password",
    hidePassword: body.getAttribute("data-label-hide-password") || "Hide password",
  };

  // Show / hide on every password field: a real button beside the field, named for screen
  // readers, that flips the input's type. The field keeps its value and focus.
  function addReveal(input) {
    if (input.dataset.reveal === "off" || input.parentNode.classList.contains("password-field")) return;
    var wrap = document.createElement("div");
    wrap.className = "password-field";
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(input);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "reveal";
    button.textContent = words.show;
    button.setAttribute("aria-label", words.showPassword);
    button.setAttribute("aria-pressed", "false");
    if (input.id) button.setAttribute("aria-controls", input.id);
    button.addEventListener("click", function () {
      var hidden = input.type === "password";
      input.type = hidden ? "text" : "password";
      button.textContent = hidden ? words.hide : words.show;
      button.setAttribute("aria-label", hidden ? words.hidePassword : words.showPassword);
      button.setAttribute("aria-pressed", hidden ? "true" : "false");
    });
    wrap.appendChild(button);
  }
  document.querySelectorAll('input[type="password"]').forEach(addReveal);

  // The sidebar becomes a menu on narrow screens.
  document.querySelectorAll("[data-menu-toggle]").forEach(function (toggle) {
    var nav = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!nav) return;
    nav.setAttribute("data-collapsible", "");
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  });

  // Forms that change a lot ask first: <form data-confirm="Delete this user?">.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // A "select all" checkbox: <input type=checkbox data-select-all="name-of-the-row-boxes">.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var name = all.getAttribute("data-select-all");
    var boxes = function () { return document.querySelectorAll('input[type="checkbox"][name="' + name + '"]'); };
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
    });
  });

  // Selects that submit their form when changed (a language switcher, page size): the form
  // keeps its submit button for keyboards and browsers without scripts.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
