// Small behaviours of the staff pages, wired by data attributes: the Content-Security-Policy allows no inline
// script or event handler. Listeners sit on the document, so rows and panels htmx swaps in work too.
document.addEventListener("click", function (event) {
  var all = event.target.closest("[data-select-all]");
  if (all) {  // "Select all shown" on the invoice list
    document.querySelectorAll(all.dataset.selectAll).forEach(function (box) { box.checked = all.checked; });
  }
  var copy = event.target.closest("[data-copy]");
  if (copy) {  // "Copy" beside the pay link
    var field = document.querySelector(copy.dataset.copy);
    field.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value); }
    copy.textContent = "Copied";
  }
});
document.addEventListener("focusin", function (event) {
  if (event.target.matches("[data-select-on-focus]")) { event.target.select(); }
});
