// Add a card: Stripe Elements takes the number, confirms the SetupIntent with Stripe directly,
// and only the SetupIntent id is posted to the portal. Needs Stripe.js loaded first.
(() => {
  const form = document.getElementById("card-form");
  if (!form) return;
  const stripe = Stripe(JSON.parse(document.getElementById("stripe-key").textContent));
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const errors = document.getElementById("card-errors");
  const button = document.getElementById("card-submit");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    errors.hidden = true;
    const secret = JSON.parse(document.getElementById("setup-secret").textContent);
    const result = await stripe.confirmCardSetup(secret, {payment_method: {card: card}});
    if (result.error) {
      errors.textContent = (result.error && result.error.message) || "The card could not be confirmed. Try again.";
      errors.hidden = false;
      button.disabled = false;
      return;
    }
    document.getElementById("setup-intent-id").value = result.setupIntent.id;
    form.submit();
  });
})();
