// Pairing: POST the token (never in a URL); the box answers with an HttpOnly session cookie.
const form = document.getElementById("pair");
const input = document.getElementById("token");
const result = document.getElementById("result");

const messages = {
  200: "Paired. This browser may now use the dashboard and the voice client (/talk).",
  401: "That is not this box's token.",
  403: "This page's origin may not pair with the box.",
  429: "Too many wrong tokens; wait a minute and try again.",
};

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  result.textContent = "Pairing…";
  try {
    const response = await fetch("/api/pair", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: input.value.trim() }),
      credentials: "same-origin",
      cache: "no-store",
    });
    const reply = await response.json().catch(() => ({}));
    // 403 "insecure": the box will not take the token over plain HTTP from the network
    result.textContent = (response.status === 403 && reply.error === "insecure" ? reply.message : null)
      ?? messages[response.status] ?? `The box answered ${response.status}.`;
    if (response.ok) input.value = "";
  } catch (err) {
    result.textContent = `Cannot reach the box: ${err}`;
  }
});
