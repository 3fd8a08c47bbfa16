// Pay in place (templates/portal/_pay_dialog.html): the portal's pay forms post with htmx into the pay dialog,
// which opens when something is swapped into it. Inside, either Stripe's embedded Checkout (mounted here with
// the session's client secret; if Stripe.js cannot load, the fallback form goes to the hosted Checkout) or the
// sandbox's card form. Wired by data attributes: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var embedded = null;  // the mounted Stripe embedded Checkout, destroyed when the dialog closes
  var LOAD_TIMEOUT = 15000;

  function dialog() { return document.getElementById("pay-dialog"); }

  // Refusals (422: mixed currencies, already paid...) and a missing invoice (404) are shown in the dialog.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "pay-dialog-body" && [400, 404, 422, 429, 503].indexOf(event.detail.xhr.status) >= 0) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var box = dialog();
    if (!box || !box.contains(event.detail.target)) { return; }
    if (!box.open) { box.showModal(); }
    var mount = box.querySelector("[data-embedded-checkout]:not([data-mounted])");
    if (mount) { mountStripe(box, mount); }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-dialog]")) { dialog().close(); }
  });

  document.addEventListener("close", function (event) {
    if (event.target.id !== "pay-dialog") { return; }
    if (embedded) { embedded.destroy(); embedded = null; }
    document.getElementById("pay-dialog-body").replaceChildren();
  }, true);

  function loadStripe(src) {
    if (window.Stripe) { return Promise.resolve(window.Stripe); }
    return new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      var timer = setTimeout(function () { reject(new Error("Stripe.js took too long")); }, LOAD_TIMEOUT);
      script.src = src;
      script.onload = function () { clearTimeout(timer); window.Stripe ? resolve(window.Stripe) : reject(new Error("no Stripe")); };
      script.onerror = function () { clearTimeout(timer); reject(new Error("Stripe.js did not load")); };
      document.head.appendChild(script);
    });
  }

  function mountStripe(box, mount) {
    mount.setAttribute("data-mounted", "");
    var secret = mount.dataset.clientSecret;
    loadStripe(box.dataset.stripeJs).then(function (Stripe) {
      return Stripe(box.dataset.stripeKey).createEmbeddedCheckoutPage({
        fetchClientSecret: function () { return Promise.resolve(secret); }
      });
    }).then(function (checkout) {
      embedded = checkout;
      var loading = mount.querySelector("[data-loading]");
      if (loading) { loading.remove(); }
      checkout.mount("#" + mount.id);
    }).catch(function () {
      // No embedded form: pay the same invoices on the provider's hosted page instead.
      var fallback = document.getElementById(mount.dataset.fallback);
      if (fallback) { fallback.submit(); }
    });
  }

  // The "pay several" bar says what is ticked: how many, and the sum per currency.
  function summarize() {
    var bar = document.querySelector("[data-pay-summary]");
    if (!bar) { return; }
    var picked = document.querySelectorAll("input.pay-pick:checked");
    if (!picked.length) { bar.textContent = bar.dataset.empty || bar.textContent; return; }
    var sums = {};
    picked.forEach(function (box) {
      var parts = box.dataset.amount.split(".");
      var digits = (parts[1] || "").length;
      var minor = parseInt(parts[0] + (parts[1] || ""), 10);
      var sum = sums[box.dataset.currency] || {minor: 0, digits: digits};
      sum.minor += minor;
      sums[box.dataset.currency] = sum;
    });
    var currencies = Object.keys(sums);
    var totals = currencies.map(function (code) {
      var sum = sums[code];
      var amount = sum.minor / Math.pow(10, sum.digits);
      try {
        return new Intl.NumberFormat(document.documentElement.lang || undefined,
          {style: "currency", currency: code, minimumFractionDigits: sum.digits}).format(amount);
      } catch (e) { return amount.toFixed(sum.digits) + " " + code; }
    });
    var text = picked.length + " selected: " + totals.join(" + ");
    if (currencies.length > 1) { text += ". Pay one currency at a time."; }
    bar.textContent = text;
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("input.pay-pick")) { summarize(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var bar = document.querySelector("[data-pay-summary]");
    if (bar) { bar.dataset.empty = bar.textContent; }
    summarize();
  });
})();
