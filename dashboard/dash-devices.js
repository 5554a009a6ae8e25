// Paired devices: who holds a session on this box (GET /api/devices), a button to forget one
// (DELETE /api/devices/ID: that browser must pair again with the token), and the SHA-256
// fingerprint of the certificate the box serves, to compare with what the browser shows.
import { el } from "./dash-format.js";

const section = () => document.getElementById("devices-section");

function deviceItem(device, refresh) {
  const item = el("li", null, "device");
  item.dataset.device = device.id;
  const paired = new Date(device.paired * 1000).toLocaleDateString();
  const expires = new Date(device.expires * 1000).toLocaleDateString();
  item.append(el("strong", device.name), ` paired ${paired}, until ${expires}`);
  if (device.current) item.append(" (this browser)");
  const forget = el("button", "Forget");
  forget.type = "button";
  forget.addEventListener("click", async () => {
    forget.disabled = true;
    await fetch(`/api/devices/${encodeURIComponent(device.id)}`, { method: "DELETE" });
    refresh();
  });
  item.append(" ", forget);
  return item;
}

/** Fill the section from /api/devices; hidden where the box asks for no token (nothing is paired). */
export async function refreshDevices() {
  const node = section();
  const response = await fetch("/api/devices", { cache: "no-store" });
  if (!response.ok) { node.hidden = true; return; }
  const reply = await response.json();
  document.getElementById("fingerprint").textContent = reply.fingerprint ?? "none (plain HTTP)";
  const list = document.getElementById("devices");
  const items = reply.devices.map((device) => deviceItem(device, refreshDevices));
  list.replaceChildren(...(items.length ? items : [el("li", "no browser paired")]));
  node.hidden = false;
}
