// The staff screen: alerts arrive over server-sent events and are listed by kind, the dissatisfaction
// alerts ranked by priority (the shopper's value). "Done" and "Confirm match" POST with the CSRF token.
const root = document.getElementById("staff");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const template = document.getElementById("alert-template");
const live = document.getElementById("live");
const store = root.dataset.store;
const seen = new Set();

function setState(state) {
  live.dataset.state = state;
  live.textContent = state;
}

function where(alert) {
  if (alert.lane) return `lane ${alert.lane}`;
  if (alert.zone) return alert.zone;
  return alert.camera;
}

async function acknowledge(alert, item, confirmed) {
  const body = new URLSearchParams({ alert_id: alert.id, store, confirmed: confirmed ? "1" : "" });
  const response = await fetch("/staff/acknowledge", {
    method: "POST",
    headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    body,
    credentials: "same-origin",
  });
  if (response.ok) {
    item.dataset.acknowledged = confirmed ? "confirmed" : "done";
    item.classList.add("done");
    item.querySelectorAll("button").forEach((button) => { button.disabled = true; });
  } else {
    item.dataset.error = String(response.status);
  }
}

function place(list, item) {
  const priority = Number(item.dataset.priority);
  const after = [...list.children].find((other) => Number(other.dataset.priority) < priority);
  list.insertBefore(item, after || null);
}

function show(alert) {
  if (seen.has(alert.id)) return;
  seen.add(alert.id);
  const list = document.getElementById(alert.kind);
  if (!list) return;
  if (alert.kind === "watchlist") document.getElementById("watchlist-section").hidden = false;
  const item = template.content.firstElementChild.cloneNode(true);
  item.dataset.alertId = alert.id;
  item.dataset.kind = alert.kind;
  item.dataset.priority = String(alert.priority);
  item.dataset.shownAt = String(Date.now());
  item.querySelector(".name").textContent = alert.name;
  item.querySelector(".message").textContent = alert.message;
  item.querySelector(".where").textContent = `${where(alert)} · ${new Date(alert.raised_at).toLocaleTimeString()}`;
  const confirm = item.querySelector(".confirm");
  if (alert.requires_confirmation) confirm.hidden = false;
  item.querySelector(".ack").addEventListener("click", () => acknowledge(alert, item, false));
  confirm.addEventListener("click", () => acknowledge(alert, item, true));
  if (alert.kind === "dissatisfaction") place(list, item);
  else list.prepend(item);
}

const events = new EventSource(root.dataset.events);
events.addEventListener("open", () => setState("live"));
events.addEventListener("alert", (event) => show(JSON.parse(event.data)));
events.addEventListener("failure", (event) => {
  const failure = JSON.parse(event.data);
  setState(`error ${failure.status}`);
  if (failure.status === 401 || failure.status === 403) events.close();
});
events.addEventListener("error", () => { if (events.readyState !== EventSource.OPEN) setState("reconnecting"); });
