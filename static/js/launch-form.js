// The launch form: a sold-out flavor or region can be chosen only to wait in the queue. The
// server renders sold-out options disabled (data-sold-out) unless the queue box is ticked; this
// keeps them in step with the box, also after htmx re-renders the form for another flavor.
// A region picked while that re-render is in flight is the person's latest choice: it is kept
// over the server's preselection when the new choices arrive.
(function () {
  let regionAtRequest = null;
  let keptRegion = null;
  const regionSelect = () => document.querySelector("#launch-form select[name=region]");

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
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!event.target.matches("#launch-form select[name=flavor]")) {
      // Another redraw ("Run on": a reservation fixes the region): the server's region stands.
      regionAtRequest = null;
      return;
    }
    const region = regionSelect();
    regionAtRequest = region ? region.value : null;
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.id !== "launch-region-choices") return;
    const region = regionSelect();
    // Changed since the request left: remember it for after the swap.
    keptRegion = region && regionAtRequest !== null && region.value !== regionAtRequest ? region.value : null;
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    const form = document.getElementById("launch-form");
    if (!form) return;
    sync(form);
    const kept = keptRegion;
    keptRegion = null;
    const region = regionSelect();
    if (kept && region) {
      const option = region.querySelector(`option[value="${CSS.escape(kept)}"]`);
      if (option && !option.disabled) region.value = kept;
    }
  });
})();
