// smallboat's monitoring dashboard: fetch the snapshot the monitoring job wrote, draw it.
// Vanilla JS and hand-drawn inline SVG, nothing loaded from the internet. Every field of the
// snapshot may be null or missing: each section then says so instead of failing.
// Ids and data-testid attributes are stable: tests read the numbers through them.
"use strict";

(() => {
  const SNAPSHOT_URL = "/dashboard/api/snapshot";
  const CARD_URL = "/dashboard/card";
  const REFRESH_MS = 30000;
  const NA = "—";
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- formats (the tests format the snapshot the same way and compare) -------------------

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  const fmt = {
    count: (x) => (isNum(x) ? String(Math.round(x)).replace(/\B(?=(\d{3})+(?!\d))/g, ",") : NA),
    auc: (x) => (isNum(x) ? x.toFixed(3) : NA),
    ci: (ci) => (Array.isArray(ci) && isNum(ci[0]) && isNum(ci[1])
      ? `[${ci[0].toFixed(3)}, ${ci[1].toFixed(3)}]` : NA),
    pct: (x) => (isNum(x) ? `${(x * 100).toFixed(2)}%` : NA),
    ms: (x) => (isNum(x) ? `${x.toFixed(1)} ms` : NA),
    // Drift scores are distances or p-values: tiny p-values keep their magnitude.
    score: (x) => (!isNum(x) ? NA : x !== 0 && Math.abs(x) < 0.001 ? x.toExponential(2)
      : x.toFixed(3)),
    challenge: (score, max) => (!isNum(score) ? NA
      : isNum(max) ? `${score.toFixed(3)} / ${max.toFixed(3)}` : score.toFixed(3)),
    time: (ms) => (isNum(ms) ? `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`
      : NA),
    clock: (ms) => (isNum(ms) ? new Date(ms).toISOString().slice(11, 16) : NA),
    yesNo: (b) => (b === true ? "yes" : b === false ? "no" : NA),
    duration: (ms) => {
      if (!isNum(ms)) return NA;
      if (ms % 3600000 === 0) return `${ms / 3600000} h`;
      if (ms % 60000 === 0) return `${ms / 60000} min`;
      return `${(ms / 1000).toFixed(0)} s`;
    },
  };

  // ---- DOM helpers ---------------------------------------------------------------------

  // el("td", {class: "num", "data-field": "n"}, "1,234"): attributes, then children (strings
  // become text nodes, so snapshot strings are never parsed as HTML).
  function make(ns, tag, attrs, children) {
    const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined && v !== false) node.setAttribute(k, String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  const el = (tag, attrs, ...children) => make(null, tag, attrs, children);
  const svg = (tag, attrs, ...children) => make(SVG_NS, tag, attrs, children);

  const empty = (testid, text) => el("p", { class: "empty", "data-testid": testid }, text);

  function stats(items) {
    // items: [label, value, testid]
    return el("dl", { class: "stats" }, items.map(([label, value, testid]) =>
      el("div", {}, el("dt", {}, label), el("dd", { id: testid, "data-testid": testid }, value))));
  }

  function cell(field, text, numeric) {
    const cls = [numeric ? "num" : "", text === NA ? "na" : ""].filter(Boolean).join(" ");
    return el("td", { "data-field": field, class: cls || null }, text);
  }

  function table(testid, headers, rows) {
    return el("table", { id: testid, "data-testid": testid },
      el("thead", {}, el("tr", {}, headers.map(([name, numeric]) =>
        el("th", { class: numeric ? "num" : null }, name)))),
      el("tbody", {}, rows));
  }

  function legend(entries) {
    return el("div", { class: "legend" }, entries.map(([name, color]) => {
      const swatch = el("i");
      swatch.style.background = color;
      return el("span", {}, swatch, name);
    }));
  }

  // ---- charts --------------------------------------------------------------------------

  // Charts are drawn in viewBox units and scaled to their panel: a half-page panel is about
  // 560 px wide, so text of 10 units reads at about 10 px.
  const HALF = { width: 560, height: 220 };
  const FULL = { width: 1100, height: 260 };
  const M = { left: 46, right: 12, top: 10, bottom: 26 };

  const scale = (d0, d1, r0, r1) => (v) => (d1 === d0 ? (r0 + r1) / 2
    : r0 + ((v - d0) / (d1 - d0)) * (r1 - r0));

  function frame(testid, width, height, yTicks, y, yFormat) {
    const root = svg("svg", {
      class: "chart", id: testid, "data-testid": testid, viewBox: `0 0 ${width} ${height}`,
      role: "img",
    });
    for (const t of yTicks) {
      root.append(svg("line", { class: "grid", x1: M.left, x2: width - M.right, y1: y(t), y2: y(t) }));
      root.append(svg("text", { x: M.left - 4, y: y(t) + 3, "text-anchor": "end" }, yFormat(t)));
    }
    root.append(svg("line", {
      class: "axis", x1: M.left, x2: width - M.right, y1: height - M.bottom, y2: height - M.bottom,
    }));
    return root;
  }

  // Bars: [{value, label, title, attrs}]; a label under every `labelEvery`-th bar.
  function barChart(testid, bars, { barTestid, yFormat = fmt.count, labelEvery = 1, size = HALF }) {
    const { width: W, height: H } = size;
    const top = Math.max(1, ...bars.map((b) => (isNum(b.value) ? b.value : 0)));
    const y = scale(0, top, H - M.bottom, M.top);
    const root = frame(testid, W, H, [0, top / 2, top], y, yFormat);
    const step = (W - M.left - M.right) / Math.max(1, bars.length);
    bars.forEach((b, i) => {
      const v = isNum(b.value) ? b.value : 0;
      const x = M.left + i * step;
      root.append(svg("rect", {
        class: "bar", "data-testid": barTestid, x: x + step * 0.1, width: step * 0.8,
        y: y(v), height: Math.max(0, y(0) - y(v)), ...b.attrs,
      }, svg("title", {}, b.title)));
      if (i % labelEvery === 0) {
        root.append(svg("text", { x: x + step / 2, y: H - 8, "text-anchor": "middle" }, b.label));
      }
    });
    return root;
  }

  // Lines over time: series [{name, color, points: [{x, y, title, attrs}]}], a point with a
  // null y breaks its line; `band` [lo, hi] and `ref` draw a reference (offline AUC and its CI);
  // `bars` [{x, value, title}] draw label counts along the bottom on their own scale.
  function lineChart(testid, series, opts) {
    const { yDomain, yFormat, pointTestid, band, ref, bars, barTestid, size = HALF } = opts;
    const { width: W, height: H } = size;
    const xs = series.flatMap((s) => s.points.map((p) => p.x)).concat((bars || []).map((b) => b.x));
    const x0 = Math.min(...xs);
    const x1 = Math.max(...xs);
    // Label bars sit centred on their window: keep the outermost ones inside the plot.
    const barWidth = bars && bars.length
      ? Math.max(3, ((W - M.left - M.right) / bars.length) * 0.5) : 0;
    const inset = Math.max(10, barWidth / 2 + 2);
    const x = scale(x0, x1, M.left + inset, W - M.right - inset);
    const y = scale(yDomain[0], yDomain[1], H - M.bottom, M.top);
    const ticks = [yDomain[0], (yDomain[0] + yDomain[1]) / 2, yDomain[1]];
    const root = frame(testid, W, H, ticks, y, yFormat);
    if (bars && bars.length) {
      const top = Math.max(1, ...bars.map((b) => b.value));
      const h = scale(0, top, 0, (H - M.top - M.bottom) * 0.3);
      for (const b of bars) {
        root.append(svg("rect", {
          class: "bar labels", "data-testid": barTestid, "data-value": b.value,
          x: x(b.x) - barWidth / 2, width: barWidth, y: H - M.bottom - h(b.value), height: h(b.value),
        }, svg("title", {}, b.title)));
      }
    }
    if (band) {
      const lo = Math.max(yDomain[0], band[0]);
      const hi = Math.min(yDomain[1], band[1]);
      root.append(svg("rect", {
        class: "band", x: M.left, width: W - M.left - M.right,
        y: y(hi), height: Math.max(0, y(lo) - y(hi)),
      }));
    }
    if (isNum(ref)) {
      root.append(svg("line", { class: "ref", x1: M.left, x2: W - M.right, y1: y(ref), y2: y(ref) }));
    }
    for (const s of series) {
      let d = "";
      let pen = "M";
      for (const p of s.points) {
        if (!isNum(p.y)) { pen = "M"; continue; }
        d += `${pen}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)} `;
        pen = "L";
      }
      root.append(svg("path", { class: "line", d: d.trim(), stroke: s.color }));
      for (const p of s.points) {
        if (!isNum(p.y)) continue;
        root.append(svg("circle", {
          "data-testid": pointTestid, cx: x(p.x), cy: y(p.y), r: 3, fill: s.color, ...p.attrs,
        }, svg("title", {}, p.title)));
      }
    }
    root.append(svg("text", { x: M.left, y: H - 8 }, fmt.clock(x0)));
    root.append(svg("text", { x: W - M.right, y: H - 8, "text-anchor": "end" }, fmt.clock(x1)));
    return root;
  }

  // ---- sections ------------------------------------------------------------------------

  function renderHeader(s) {
    document.getElementById("generated-at").textContent = fmt.time(s.generated_at_ms);
    document.getElementById("champion-version").textContent = s.champion?.version ?? NA;
    document.getElementById("window").textContent = fmt.duration(s.window_ms);
    document.getElementById("home").textContent = s.home ?? NA;
  }

  function renderAlerts(s) {
    const alerts = s.alerts || [];
    if (!alerts.length) {
      return [empty("alerts-empty", "No alerts: drift and live quality are within their thresholds.")];
    }
    return [el("ul", { class: "alerts", id: "alerts-list", "data-testid": "alerts-list" },
      alerts.map((a) => el("li", { "data-testid": "alert", "data-kind": a.kind ?? "" },
        el("span", { class: `badge ${a.kind ?? ""}`, "data-field": "kind" }, a.kind ?? "alert"),
        el("span", { "data-field": "message" }, a.message ?? NA))))];
  }

  function renderTraffic(s) {
    const windows = s.traffic || [];
    if (!windows.length) return [empty("traffic-empty", "No predictions logged yet.")];
    const sum = (key) => windows.reduce((t, w) => t + (isNum(w[key]) ? w[key] : 0), 0);
    return [
      stats([
        ["predictions", fmt.count(sum("predictions")), "traffic-predictions"],
        ["sessions", fmt.count(sum("sessions")), "traffic-sessions"],
        ["windows", fmt.count(windows.length), "traffic-windows"],
      ]),
      barChart("traffic-chart", windows.map((w) => ({
        value: w.predictions,
        label: fmt.clock(w.window_start_ms),
        title: `${fmt.time(w.window_start_ms)}: ${fmt.count(w.predictions)} predictions, ` +
          `${fmt.count(w.sessions)} sessions, p95 ${fmt.ms(w.p95_ms)}`,
        attrs: { "data-predictions": w.predictions ?? "" },
      })), { barTestid: "traffic-bar", labelEvery: Math.ceil(windows.length / 8) }),
    ];
  }

  function renderLatency(s) {
    const l = s.latency;
    const out = [];
    if (!l) {
      out.push(empty("latency-empty", "No latency measured yet."));
    } else {
      out.push(stats([
        ["requests", fmt.count(l.count), "latency-count"],
        ["p50", fmt.ms(l.p50_ms), "latency-p50"],
        ["p95", fmt.ms(l.p95_ms), "latency-p95"],
        ["p99", fmt.ms(l.p99_ms), "latency-p99"],
      ]));
    }
    const windows = (s.traffic || []).filter((w) => isNum(w.window_start_ms));
    if (windows.length) {
      const keys = [["p50", "p50_ms"], ["p95", "p95_ms"], ["p99", "p99_ms"]];
      const top = Math.max(1, ...windows.flatMap((w) => keys.map(([, k]) => (isNum(w[k]) ? w[k] : 0))));
      const series = keys.map(([name, key], i) => ({
        name, color: PALETTE[i],
        points: windows.map((w) => ({
          x: (w.window_start_ms + (w.window_end_ms ?? w.window_start_ms)) / 2, y: w[key],
          title: `${fmt.time(w.window_start_ms)}: ${name} ${fmt.ms(w[key])}`,
        })),
      }));
      out.push(legend(series.map((x) => [x.name, x.color])));
      out.push(lineChart("latency-chart", series, {
        yDomain: [0, top * 1.1], yFormat: (v) => `${v.toFixed(0)} ms`, pointTestid: "latency-point",
      }));
    }
    return out;
  }

  function renderPredictions(s) {
    const p = s.predictions;
    if (!p || !Array.isArray(p.counts) || !p.counts.length) {
      return [empty("predictions-empty", "No predictions logged yet.")];
    }
    const edges = p.edges || [];
    const edge = (i) => (isNum(edges[i]) ? edges[i].toFixed(1) : "?");
    return [
      stats([
        ["predictions", fmt.count(p.count), "predictions-count"],
        ["mean probability", fmt.auc(p.mean), "predictions-mean"],
      ]),
      barChart("predictions-chart", p.counts.map((c, i) => ({
        value: c,
        label: edge(i),
        title: `[${edge(i)}, ${edge(i + 1)}): ${fmt.count(c)}`,
        attrs: { "data-count": c ?? "" },
      })), { barTestid: "prediction-bar" }),
    ];
  }

  // One colour per model version, the same in every chart.
  function versionColors(s) {
    const names = [];
    for (const r of [...(s.quality?.overall || []), ...(s.quality?.windows || [])]) {
      if (r.model_version != null && !names.includes(r.model_version)) names.push(r.model_version);
    }
    return new Map(names.map((n, i) => [n, PALETTE[i % PALETTE.length]]));
  }

  function renderQuality(s) {
    const q = s.quality;
    const out = [];
    const overall = q?.overall || [];
    const o = s.offline;
    out.push(stats([
      ["awaiting labels", fmt.count(q?.pending), "quality-pending"],
      ["offline version", o?.model_version ?? NA, "offline-version"],
      ["offline test AUC", fmt.auc(o?.test_roc_auc), "offline-auc"],
      ["its 95% CI", fmt.ci(o?.test_roc_auc_ci), "offline-ci"],
      ["offline Challenge score", fmt.challenge(o?.challenge_score), "offline-challenge"],
    ]));
    if (!overall.length) {
      out.push(empty("quality-empty",
        "No labelled predictions yet: labels arrive with purchases, or after 30 idle minutes."));
      return out;
    }
    out.push(table("quality-table", [
      ["model version"], ["labelled", 1], ["positives", 1], ["ROC-AUC", 1], ["95% CI", 1],
      ["Challenge score / max", 1], ["positive rate", 1], ["mean probability", 1],
    ], overall.map((r) => el("tr",
      { "data-testid": "quality-row", "data-version": r.model_version ?? "" },
      cell("model_version", r.model_version ?? NA),
      cell("n_labelled", fmt.count(r.n_labelled), true),
      cell("positives", fmt.count(r.positives), true),
      cell("roc_auc", fmt.auc(r.roc_auc), true),
      cell("roc_auc_ci", fmt.ci(r.roc_auc_ci), true),
      cell("challenge", fmt.challenge(r.challenge_score, r.challenge_max), true),
      cell("positive_rate", fmt.pct(r.positive_rate), true),
      cell("mean_probability", fmt.auc(r.mean_probability), true)))));

    const windows = (q?.windows || []).filter((w) => isNum(w.window_start_ms));
    if (!windows.length) {
      out.push(empty("quality-windows-empty", "No labelled windows yet."));
      return out;
    }
    const colors = versionColors(s);
    const mid = (w) => (w.window_start_ms + (w.window_end_ms ?? w.window_start_ms)) / 2;
    const series = [...colors].map(([version, color]) => ({
      name: version, color,
      points: windows.filter((w) => w.model_version === version).map((w) => ({
        x: mid(w), y: w.roc_auc,
        title: `${version} ${fmt.time(w.window_start_ms)}: AUC ${fmt.auc(w.roc_auc)}, ` +
          `${fmt.count(w.n_labelled)} labelled`,
        attrs: { "data-version": version, "data-n": w.n_labelled ?? "" },
      })),
    }));
    const labelled = new Map();
    for (const w of windows) labelled.set(mid(w), (labelled.get(mid(w)) || 0) + (w.n_labelled || 0));
    const aucs = windows.map((w) => w.roc_auc).concat(o?.test_roc_auc_ci || []).filter(isNum);
    const low = Math.min(0.5, ...aucs);
    out.push(el("h3", {}, "Live ROC-AUC per window ", el("small", {},
      "(grey bars: labelled predictions; green band: offline test AUC and its 95% CI)")));
    out.push(legend(series.map((x) => [x.name, x.color])));
    out.push(lineChart("quality-auc-chart", series, {
      yDomain: [Math.floor(low * 10) / 10, 1], yFormat: (v) => v.toFixed(2), pointTestid: "auc-point",
      size: FULL,
      band: Array.isArray(o?.test_roc_auc_ci) ? o.test_roc_auc_ci : null, ref: o?.test_roc_auc,
      bars: [...labelled].map(([x, v]) => ({ x, value: v, title: `${fmt.count(v)} labelled` })),
      barTestid: "label-bar",
    }));
    out.push(el("details", {}, el("summary", {}, `Windows (${windows.length})`),
      table("quality-windows-table", [
        ["model version"], ["window start"], ["labelled", 1], ["ROC-AUC", 1],
        ["Challenge score", 1], ["positive rate", 1],
      ], windows.map((w) => el("tr",
        { "data-testid": "quality-window-row", "data-version": w.model_version ?? "" },
        cell("model_version", w.model_version ?? NA),
        cell("window_start", fmt.time(w.window_start_ms)),
        cell("n_labelled", fmt.count(w.n_labelled), true),
        cell("roc_auc", fmt.auc(w.roc_auc), true),
        cell("challenge_score", fmt.challenge(w.challenge_score), true),
        cell("positive_rate", fmt.pct(w.positive_rate), true))))));
    return out;
  }

  function renderCalibration(s) {
    const colors = versionColors(s);
    const rows = (s.quality?.overall || []).filter((r) => (r.calibration || []).length);
    if (!rows.length) {
      return [empty("calibration-empty", "No labelled predictions to calibrate against yet.")];
    }
    const size = 300;
    const m = { left: 36, right: 10, top: 10, bottom: 30 };
    const x = scale(0, 1, m.left, size - m.right);
    const y = scale(0, 1, size - m.bottom, m.top);
    const root = svg("svg", {
      class: "chart calibration-chart", id: "calibration-chart", "data-testid": "calibration-chart",
      viewBox: `0 0 ${size} ${size}`, role: "img",
    });
    for (const t of [0, 0.5, 1]) {
      root.append(svg("line", { class: "grid", x1: x(0), x2: x(1), y1: y(t), y2: y(t) }));
      root.append(svg("text", { x: m.left - 4, y: y(t) + 3, "text-anchor": "end" }, t.toFixed(1)));
      root.append(svg("text", { x: x(t), y: size - m.bottom + 12, "text-anchor": "middle" },
        t.toFixed(1)));
    }
    root.append(svg("text", { x: (m.left + size) / 2, y: size - 4, "text-anchor": "middle" },
      "mean predicted probability"));
    root.append(svg("line", { class: "diagonal", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }));
    const top = Math.max(1, ...rows.flatMap((r) => r.calibration.map((b) => b.count || 0)));
    for (const r of rows) {
      const color = colors.get(r.model_version) || PALETTE[0];
      const bins = r.calibration.filter((b) => isNum(b.mean_probability) && isNum(b.positive_rate));
      const d = bins.map((b, i) =>
        `${i ? "L" : "M"}${x(b.mean_probability).toFixed(1)},${y(b.positive_rate).toFixed(1)}`);
      root.append(svg("path", { class: "line", d: d.join(" "), stroke: color }));
      for (const b of bins) {
        root.append(svg("circle", {
          "data-testid": "calibration-point", "data-version": r.model_version ?? "",
          cx: x(b.mean_probability), cy: y(b.positive_rate),
          r: 2 + 5 * Math.sqrt((b.count || 0) / top), fill: color,
        }, svg("title", {}, `${r.model_version} [${fmt.auc(b.bin_low)}, ${fmt.auc(b.bin_high)}): ` +
          `${fmt.count(b.count)} predictions, mean ${fmt.auc(b.mean_probability)}, ` +
          `positive rate ${fmt.pct(b.positive_rate)}`)));
      }
    }
    return [
      el("p", { class: "empty" },
        "Observed positive rate against predicted probability; on the diagonal is calibrated."),
      legend(rows.map((r) => [r.model_version ?? NA, colors.get(r.model_version) || PALETTE[0]])),
      root,
      el("details", {}, el("summary", {}, "Bins"), table("calibration-table", [
        ["model version"], ["bin"], ["predictions", 1], ["mean probability", 1], ["positive rate", 1],
      ], rows.flatMap((r) => r.calibration.map((b) => el("tr",
        { "data-testid": "calibration-row", "data-version": r.model_version ?? "" },
        cell("model_version", r.model_version ?? NA),
        cell("bin", `[${fmt.auc(b.bin_low)}, ${fmt.auc(b.bin_high)})`),
        cell("count", fmt.count(b.count), true),
        cell("mean_probability", fmt.auc(b.mean_probability), true),
        cell("positive_rate", fmt.pct(b.positive_rate), true)))))),
    ];
  }

  function renderDrift(s) {
    const d = s.drift;
    if (!d) {
      return [empty("drift-empty",
        "No drift report yet: it needs a training reference and logged predictions.")];
    }
    const detected = el("span", { class: d.detected ? "yes-bad" : "no-good" }, fmt.yesNo(d.detected));
    const out = [stats([
      ["drift detected", detected, "drift-detected"],
      ["drifted share", fmt.pct(d.drift_share), "drift-share"],
      ["share threshold", fmt.pct(d.share_threshold), "drift-share-threshold"],
      ["model version", d.model_version ?? NA, "drift-version"],
      ["reference rows", fmt.count(d.reference_rows), "drift-reference-rows"],
      ["current rows", fmt.count(d.current_rows), "drift-current-rows"],
    ])];
    const features = d.features || [];
    if (!features.length) {
      out.push(empty("drift-features-empty", "The drift report tested no feature."));
    } else {
      out.push(table("drift-table", [
        ["feature"], ["kind"], ["method"], ["score / p-value", 1], ["threshold", 1], ["drifted"],
      ], features.map((f) => el("tr", {
        "data-testid": "drift-row", "data-feature": f.feature ?? "",
        "data-drifted": String(f.drifted === true),
        class: f.drifted ? "drifted" : null,
      },
      cell("feature", f.feature ?? NA),
      cell("kind", f.kind ?? NA),
      cell("method", f.method ?? NA),
      cell("score", fmt.score(f.score), true),
      cell("threshold", fmt.score(f.threshold), true),
      cell("drifted", fmt.yesNo(f.drifted))))));
    }
    out.push(el("p", { class: "empty", id: "drift-report", "data-testid": "drift-report" },
      d.report_path ? `Evidently report: ${d.report_path}` : "No Evidently report file."));
    return out;
  }

  function renderVersions(s) {
    const versions = s.versions || [];
    if (!versions.length) {
      return [empty("versions-empty", "No registered model version yet: run `smallboat train`.")];
    }
    return [table("versions-table", [
      ["version"], ["created"], ["champion"], ["test ROC-AUC", 1], ["gate"], ["summary"],
    ], versions.map((v) => el("tr", { "data-testid": "version-row", "data-version": v.version ?? "" },
      cell("version", v.version ?? NA),
      cell("created", fmt.time(v.created_at_ms)),
      el("td", { "data-field": "champion" },
        v.is_champion ? el("span", { class: "badge champion" }, "champion") : ""),
      cell("test_roc_auc", fmt.auc(v.test_roc_auc), true),
      cell("gate_decision", v.gate_decision ?? NA),
      cell("summary", v.summary ?? NA))))];
  }

  function renderCard(s) {
    const c = s.champion;
    if (!c) return [empty("card-empty", "No champion yet: promote a model version to see its card.")];
    if (!c.card_path) {
      return [empty("card-empty", `The champion ${c.version ?? ""} has no model card.`)];
    }
    return [
      el("p", {}, el("a", {
        id: "card-link", "data-testid": "card-link", href: CARD_URL, target: "_blank", rel: "noopener",
      },
        `Open the model card of ${c.version ?? "the champion"}`)),
      el("iframe", {
        class: "card", id: "card-frame", "data-testid": "card-frame", src: CARD_URL,
        title: "champion model card", loading: "lazy", sandbox: "allow-scripts",
      }),
    ];
  }

  const SECTIONS = {
    alerts: renderAlerts, traffic: renderTraffic, latency: renderLatency,
    predictions: renderPredictions, calibration: renderCalibration, quality: renderQuality,
    drift: renderDrift, versions: renderVersions, card: renderCard,
  };

  // ---- loading -------------------------------------------------------------------------

  function setState(state, message) {
    document.body.dataset.state = state;
    document.getElementById("status").textContent = message;
  }

  // The card is redrawn only when the champion changes: reloading its iframe every 30 s would
  // lose the reader's place in it.
  let drawnChampion;

  function render(s) {
    renderHeader(s);
    const champion = JSON.stringify(s.champion ?? null);
    for (const [id, draw] of Object.entries(SECTIONS)) {
      if (id === "card" && champion === drawnChampion) continue;
      const box = document.getElementById(id);
      try {
        box.replaceChildren(...draw(s));
      } catch (err) {
        // One malformed section must not blank the others.
        console.error(`dashboard section ${id}:`, err);
        box.replaceChildren(empty(`${id}-error`, `This section could not be drawn: ${err.message}`));
      }
    }
    drawnChampion = champion;
  }

  async function load() {
    let response;
    try {
      response = await fetch(SNAPSHOT_URL, { cache: "no-store" });
    } catch (err) {
      setState("error", `could not reach the service: ${err.message}`);
      return;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body?.detail ?? `${response.status} ${response.statusText}`;
      // No snapshot yet is a state, not a failure; an earlier snapshot stays on screen otherwise.
      setState(response.status === 404 ? "empty" : "error", detail);
      if (response.status === 404) document.getElementById("content").hidden = true;
      return;
    }
    if (!body || typeof body !== "object") {
      setState("error", "the snapshot is not a JSON object");
      return;
    }
    render(body);
    document.getElementById("content").hidden = false;
    const now = new Date().toISOString().slice(11, 19);
    setState("ready", `updated ${now} UTC; refreshes every ${REFRESH_MS / 1000} s`);
  }

  load();
  setInterval(load, REFRESH_MS);
})();
