// The status page: polls /healthz and shows what the daemon reports.
const field = (id, text) => { document.getElementById(id).textContent = text; };

function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

async function refresh() {
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    const status = await response.json();
    field("box", status.box);
    field("state", status.status === "ok" ? "running" : status.status);
    field("version", `${status.version} (protocol ${status.protocol})`);
    field("uptime", duration(status.uptime_s));
    field("clients", String(status.clients));
    field("conversations", String(status.conversations));
    field("mic", status.mic ? "listening" : "off");
  } catch (err) {
    field("state", `unreachable (${err})`);
  }
}

refresh();
setInterval(refresh, 2000);
