// The launch form: a sold-out flavor or region can be chosen only to wait in the queue. The
// server renders sold-out options disabled (data-sold-out) unless the queue box is ticked; this
// keeps them in step with the box, also after htmx re-renders the form for another flavor.
(function () {
  function sync(form) {
    const box = form.querySelector("input[name=queue]");
    if (!box) return;
    form.querySelectorAll("option[data-sold-out]").forEach(function (option) {
      option.disabled = !box.checked;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("#launch-form input[name=queue]")) sync(event.target.form);
  });
  document.addEventListener("htmx:afterSwap", function () {
    const form = document.getElementById("launch-form");
    if (form) sync(form);
  });
})();
