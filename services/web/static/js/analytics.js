// Store analytics: the charts are drawn by Chart.js (static/vendor, from npm) from /analytics/data, the
// numbers GetStoreAnalytics returned; the same numbers are in the page's tables.
const root = document.getElementById("analytics");
const colors = ["#2563eb", "#f97316", "#10b981", "#a855f7", "#ef4444"];

function chart(id, type, labels, datasets, options = {}) {
  const canvas = document.getElementById(id);
  const chartDatasets = datasets.map((dataset, index) => ({
    backgroundColor: colors[index % colors.length],
    borderColor: colors[index % colors.length],
    ...dataset,
  }));
  return new window.Chart(canvas, {
    type,
    data: { labels, datasets: chartDatasets },
    options: { animation: false, responsive: true, maintainAspectRatio: true, ...options },
  });
}

async function draw() {
  const response = await fetch(root.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) {
    root.dataset.error = String(response.status);
    return;
  }
  const data = await response.json();
  chart("chart-hours", "bar", data.hours.labels, [
    { label: "member visits", data: data.hours.visits },
    { label: "anonymous shoppers", data: data.hours.anonymous },
  ]);
  chart("chart-zones", "bar", data.zones.labels, [
    { label: "mean dwell (s)", data: data.zones.mean },
    { label: "p90 dwell (s)", data: data.zones.p90 },
  ]);
  chart("chart-demographics", "bar", data.demographics.labels, [
    { label: "female", data: data.demographics.female },
    { label: "male", data: data.demographics.male },
    { label: "unknown", data: data.demographics.unknown },
  ], { scales: { x: { stacked: true }, y: { stacked: true } } });
  chart("chart-lanes", "bar", data.lanes.labels, [
    { label: "checkouts", data: data.lanes.checkouts },
    { label: "dissatisfaction alerts", data: data.lanes.alerts },
  ]);
  chart("chart-offers", "bar", data.offers.labels, [{ label: "offers", data: data.offers.counts }]);
  root.dataset.rendered = "yes";
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
else draw();
