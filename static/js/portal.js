// Behaviour of the layout that used inline handlers, which the Content Security Policy forbids.
(() => {
  // A <select data-autosubmit> submits its form when changed (the organization switcher).
  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-autosubmit]") && event.target.form) event.target.form.submit();
  });
  // A <button data-print> prints the page (invoices).
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-print]")) window.print();
  });
})();
