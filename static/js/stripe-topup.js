// A top-up the bank wants authenticated: confirm the PaymentIntent in the page (3-D Secure).
// The credits still come only from Stripe's webhook. Needs Stripe.js loaded first.
(async () => {
  const secret = document.getElementById("payment-secret");
  if (!secret) return;
  const stripe = Stripe(JSON.parse(document.getElementById("stripe-key").textContent));
  const result = await stripe.confirmCardPayment(JSON.parse(secret.textContent));
  const status = document.getElementById("topup-status");
  const ok = !result.error && result.paymentIntent && result.paymentIntent.status === "succeeded";
  status.className = "message " + (ok ? "message-success" : "message-error");
  status.textContent = ok ? "Payment received: the credits appear in a moment."
    : ((result.error && result.error.message) || "The payment was not confirmed; no credits were bought.");
  status.hidden = false;
})();
