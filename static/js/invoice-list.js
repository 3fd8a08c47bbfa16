// The invoice list (admin/invoices.html). Loaded again by each boosted visit, so it sets itself up once and
// listens on the document. Without JavaScript the list still works: the server drops empty filters.
(function () {
  if (window.invoiceListReady) return;
  window.invoiceListReady = true;

  // Only the filters that are set go into the request and the address bar.
  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt.closest || !event.detail.elt.closest("#filters")) return;
    var data = event.detail.formData;
    Array.from(new Set(data.keys())).forEach(function (name) {
      var values = data.getAll(name).filter(function (value) { return String(value).trim() !== ""; });
      data.delete(name);
      values.forEach(function (value) { data.append(name, value); });
    });
  });

  // Plain submits (htmx not loaded yet): leave empty fields out of the form.
  document.addEventListener("submit", function (event) {
    if (event.target.id !== "filters") return;
    Array.from(event.target.elements).forEach(function (field) {
      if (field.name && field.value.trim() === "") {
        field.disabled = true;
        setTimeout(function () { field.disabled = false; });
      }
    });
  });

  function countSelected() {
    var bulk = document.getElementById("bulk");
    var output = document.getElementById("selected-count");
    if (!bulk || !output) return;
    var n = bulk.querySelectorAll("input[name=ids]:checked").length;
    output.textContent = n + " selected";
  }
  ["change", "click"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      if (event.target.closest && event.target.closest("#bulk")) countSelected();
    });
  });
  document.addEventListener("htmx:afterSettle", countSelected);
  document.addEventListener("DOMContentLoaded", countSelected);
  countSelected();
})();
