// amqpq dashboard: live fragments (server-sent events), the overview chart, actions.
(function () {
  "use strict";
  const live = document.getElementById("live");
  let pending = null;

  async function refreshFragments() {
    for (const el of document.querySelectorAll("[data-live]")) {
      try {
        const response = await fetch(el.dataset.live, { headers: { Accept: "text/html" } });
        if (response.ok) el.innerHTML = await response.text();
      } catch (e) { /* the next change tries again */ }
    }
    await refreshChart();
    document.body.dataset.refreshed = String(Date.now());
  }

  function schedule() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refreshFragments(); }, 500);
  }

  if (window.EventSource) {
    const source = new EventSource("/api/events");
    source.onopen = () => live && live.classList.add("on");
    source.onerror = () => live && live.classList.remove("on");
    source.addEventListener("change", (event) => {
      const notice = JSON.parse(event.data);
      const page = document.querySelector("[data-task-page]");
      if (page && !(notice.tasks || []).includes(page.dataset.taskPage)) return;
      schedule();
    });
  }

  // -- the chart: received, succeeded and failed per minute ---------------------------------
  let plot = null;
  async function refreshChart() {
    const el = document.getElementById("chart");
    if (!el || !window.uPlot) return;
    const response = await fetch(el.dataset.src);
    if (!response.ok) return;
    const minutes = (await response.json()).minutes;
    const data = [
      minutes.map((m) => m.minute),
      minutes.map((m) => m.received),
      minutes.map((m) => m.succeeded),
      minutes.map((m) => m.failed),
    ];
    if (plot) { plot.setData(data); return; }
    plot = new uPlot({
      width: Math.max(400, el.clientWidth),
      height: 220,
      series: [
        {},
        { label: "received", stroke: "#2563eb", width: 2, points: { show: false } },
        { label: "succeeded", stroke: "#16a34a", width: 2, points: { show: false } },
        { label: "failed", stroke: "#dc2626", width: 2, points: { show: false } },
      ],
      axes: [{}, { label: "tasks/min" }],
    }, data, el);
    el.dataset.ready = "true";
  }
  refreshChart();

  // -- actions -------------------------------------------------------------------------------
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const out = document.getElementById("action-result");
    const say = (text) => { if (out) out.textContent = text; };
    try {
      if (action === "retry") {
        const data = await post(`/api/tasks/${button.dataset.task}/retry`);
        say("sent again as ");
        const link = document.createElement("a");
        link.href = `/tasks/${data.id}`;
        link.id = "retry-link";
        link.textContent = data.id;
        out.appendChild(link);
      } else if (action === "revoke" || action === "terminate") {
        await post(`/api/tasks/${button.dataset.task}/revoke`, { terminate: action === "terminate" });
        say("revoked");
      } else if (action === "replay") {
        const body = button.dataset.id ? { id: button.dataset.id } : {};
        const data = await post(`/api/queues/${button.dataset.queue}/dead-letters/replay`, body);
        say(`replayed ${data.replayed}`);
      } else if (action === "purge") {
        if (!window.confirm(`Purge every dead letter of ${button.dataset.queue}?`)) return;
        const data = await post(`/api/queues/${button.dataset.queue}/dead-letters/purge`);
        say(`purged ${data.purged}`);
      }
    } catch (error) {
      say(`failed: ${error.message}`);
    }
  });
})();
