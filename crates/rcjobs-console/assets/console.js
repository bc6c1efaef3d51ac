// rcjobs console: confirmations for destructive buttons and an optional auto-refresh.
// No dependencies; the pages work without it (the server asks again for bulk actions).
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
(function () {
  var el = document.querySelector("[data-refresh]");
  if (!el) { return; }
  var secs = parseInt(el.getAttribute("data-refresh"), 10) || 5;
  setTimeout(function () { if (!document.hidden) { location.reload(); } }, secs * 1000);
})();
