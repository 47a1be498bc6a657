// The capacity calendar's Gantt (apps/capacity/templates/capacity/_reservation_gantt.html): every
// <canvas data-gantt="ID"> is drawn with Chart.js as horizontal floating bars, one per reservation
// from its start to its end, from the JSON in <script id="ID" type="application/json"> beside it.
// Times are epoch milliseconds on a linear axis labelled in UTC (no date adapter needed).
(() => {
  const css = getComputedStyle(document.documentElement);
  const token = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const tones = () => ({
    scheduled: token("--chart-1", "#2f5bea"),
    active: token("--chart-2", "#12805c"),
    short: token("--chart-6", "#c11574"),
    ended: "#98a2b3",
    cancelled: "#d0d5dd",
  });
  const pad = (n) => String(n).padStart(2, "0");
  const utc = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  };

  const draw = (canvas) => {
    const data = document.getElementById(canvas.dataset.gantt);
    if (!data || !window.Chart) return;
    const spec = JSON.parse(data.textContent);
    const colors = tones();
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.bars.map((bar) => bar.label),
        datasets: [
          {
            label: "Reservation",
            data: spec.bars.map((bar) => [bar.start, bar.end]),
            backgroundColor: spec.bars.map((bar) => colors[bar.state] || colors.scheduled),
            borderSkipped: false,
            borderRadius: 3,
            barPercentage: 0.7,
          },
        ],
      },
      options: {
        indexAxis: "y",
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => {
                const bar = spec.bars[item.dataIndex];
                return `${bar.stateLabel}: ${utc(bar.start)} to ${utc(bar.end)} UTC`;
              },
            },
          },
        },
        scales: {
          x: {
            type: "linear",
            min: spec.since,
            max: spec.until,
            ticks: { maxTicksLimit: 8, callback: (value) => utc(value) },
          },
          y: { grid: { display: false } },
        },
      },
      plugins: [
        {
          // A vertical line at "now", so what is held and what is coming read at a glance.
          id: "now-line",
          afterDatasetsDraw: (chart) => {
            const x = chart.scales.x.getPixelForValue(spec.now);
            const { top, bottom } = chart.chartArea;
            const ctx = chart.ctx;
            ctx.save();
            ctx.strokeStyle = token("--chart-3", "#b54708");
            ctx.setLineDash([4, 3]);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, bottom);
            ctx.stroke();
            ctx.restore();
          },
        },
      ],
    });
  };

  // The operators' load: GPUs reserved (a step at each change point) against the fleet's capacity.
  const drawLoad = (canvas) => {
    const data = document.getElementById(canvas.dataset.reservationLoad);
    if (!data || !window.Chart) return;
    const spec = JSON.parse(data.textContent);
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    const points = spec.points.map(([x, y]) => ({ x, y }));
    new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          {
            label: "Reserved GPUs",
            data: points,
            stepped: "before",
            borderColor: token("--chart-1", "#2f5bea"),
            backgroundColor: `${token("--chart-1", "#2f5bea")}22`,
            fill: true,
            pointRadius: 0,
            borderWidth: 2,
          },
          {
            label: "Fleet capacity",
            data: [
              { x: spec.since, y: spec.capacity },
              { x: spec.until, y: spec.capacity },
            ],
            borderColor: token("--chart-3", "#b54708"),
            borderDash: [6, 4],
            pointRadius: 0,
            borderWidth: 2,
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: true,
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: { title: (items) => `${utc(items[0].parsed.x)} UTC` } },
        },
        scales: {
          x: { type: "linear", min: spec.since, max: spec.until, ticks: { maxTicksLimit: 8, callback: (v) => utc(v) } },
          y: { beginAtZero: true, suggestedMax: spec.capacity + 1, ticks: { precision: 0 } },
        },
      },
    });
  };

  const drawAll = (root) => {
    root.querySelectorAll("canvas[data-gantt]").forEach(draw);
    root.querySelectorAll("canvas[data-reservation-load]").forEach(drawLoad);
  };
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  document.addEventListener("htmx:load", (event) => drawAll(event.target));
  document.addEventListener("htmx:wsAfterMessage", () => drawAll(document));
})();
