// The chart partial (portal/ui/templates/ui/chart.html): every <canvas data-chart="ID"> is drawn
// with Chart.js from the JSON in <script id="ID" type="application/json"> beside it, when the page
// loads and whenever htmx puts new content in (a live push re-renders the partial with new data).
(() => {
  const css = getComputedStyle(document.documentElement);
  const token = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const palette = () => [
    token("--chart-1", "#2f5bea"), token("--chart-2", "#12805c"), token("--chart-3", "#b54708"),
    token("--chart-4", "#7a5af8"), token("--chart-5", "#0e9384"), token("--chart-6", "#c11574"),
  ];
  const format = (unit) => (value) => {
    if (value === null || value === undefined) return "";
    const size = Math.abs(Number(value));
    // Small amounts (cents, fractions of a percent) keep two significant digits, so axis ticks differ.
    const digits = size > 0 && size < 1 ? { maximumSignificantDigits: 2 } : { maximumFractionDigits: 2 };
    const number = Number(value).toLocaleString(undefined, digits);
    return /^[$€£¥]$/.test(unit) ? `${unit}${number}` : unit ? `${number} ${unit}` : number;
  };

  const draw = (canvas) => {
    const data = document.getElementById(canvas.dataset.chart);
    if (!data || !window.Chart) return;
    const spec = JSON.parse(data.textContent);
    const colors = palette();
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    const line = spec.kind === "line";
    new window.Chart(canvas, {
      type: spec.kind,
      data: {
        labels: spec.labels,
        datasets: spec.series.map((series, i) => ({
          label: series.label,
          data: series.values,
          borderColor: colors[i % colors.length],
          backgroundColor: line ? `${colors[i % colors.length]}22` : colors[i % colors.length],
          fill: line && spec.series.length === 1,
          tension: 0.25,
          pointRadius: 0,
          borderWidth: line ? 2 : 0,
          spanGaps: false,
        })),
      },
      options: {
        animation: false, // a live page redraws on every push
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: spec.series.length > 1, position: "bottom" },
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${format(spec.unit)(item.raw)}` } },
        },
        scales: {
          x: { stacked: spec.stacked, ticks: { maxTicksLimit: 8, autoSkip: true }, grid: { display: false } },
          y: { stacked: spec.stacked, beginAtZero: true, max: spec.yMax ?? undefined, ticks: { callback: format(spec.unit) } },
        },
      },
    });
  };

  const drawAll = (root) => root.querySelectorAll("canvas[data-chart]").forEach(draw);
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  document.addEventListener("htmx:load", (event) => drawAll(event.target));
  document.addEventListener("htmx:wsAfterMessage", () => drawAll(document));
})();
