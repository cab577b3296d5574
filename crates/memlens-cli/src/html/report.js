/* memlens html: draws the report from the JSON block #memlens-data.
 * Plain JavaScript, no library, nothing fetched. When everything is drawn it sets
 * document.body.dataset.rendered = "ok"; errors are shown by the handler in page.html. */
(function () {
  "use strict";

  var D = JSON.parse(document.getElementById("memlens-data").textContent);
  var R = D.report;
  // A heap snapshot (`memlens snapshot`): one moment of a running process, no history.
  var SNAPSHOT = !!(R.trace.exit && R.trace.exit.kind === "snapshot");
  var AT_END = SNAPSHOT ? "at the snapshot" : "at exit";
  var SYSTEM = new Set(D.system_modules || []);

  // ---------------------------------------------------------------------------------
  // Helpers

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (attrs[k] === null || attrs[k] === undefined) continue;
        if (k === "text") e.textContent = attrs[k];
        else if (k === "class") e.className = attrs[k];
        else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
        else e.setAttribute(k, attrs[k]);
      }
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(parent, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { add(parent, c); }); return; }
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  var SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    return e;
  }
  function $(id) { return document.getElementById(id); }

  // The units of the text reports (memlens-common units.rs).
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    var neg = n < 0, v = Math.abs(n);
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    if (v < 1024) return (neg ? "-" : "") + Math.round(v) + " B";
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (neg ? "-" : "") + v.toFixed(2) + " " + units[i];
  }
  function count(n) {
    if (n === null || n === undefined) return "–";
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function time(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms >= 10000) return (ms / 1000).toFixed(1) + " s";
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (ms >= 1) return ms.toFixed(1) + " ms";
    return ms.toFixed(3) + " ms";
  }
  function pct(a, b) { return b ? (100 * a / b).toFixed(1) + "%" : "–"; }
  function rate(bps) { return (bps >= 0 ? "+" : "") + bytes(bps) + "/s"; }
  function plural(n, one, many) { return count(n) + " " + (n === 1 ? one : many); }
  function unitValue(unit, v) {
    if (unit === "bytes") return bytes(v);
    if (unit === "blocks") return plural(v, "block", "blocks");
    return plural(v, "allocation", "allocations");
  }

  function baseName(p) { return p ? p.replace(/^.*\//, "") : p; }
  // `main (demo.c:12) [demo]`, as frame_text in report.rs.
  function frameText(f) {
    var s = f.function;
    if (f.file) s += " (" + baseName(f.file) + (f.line ? ":" + f.line : "") + ")";
    if (f.module && (f.file || f.function.indexOf(f.module) !== 0)) s += " [" + f.module + "]";
    if (f.inlined) s += " (inlined)";
    return s;
  }
  // Where a site is: its first frame outside system libraries (as site_location does).
  function siteAt(site) {
    var st = site.stack || [];
    if (!st.length) return "(no stack recorded)";
    for (var i = 0; i < st.length; i++) {
      if (!SYSTEM.has(st[i].module)) return frameText(st[i]);
    }
    return frameText(st[0]);
  }

  function stackTable(frames, allocator) {
    var rows = [];
    if (allocator) rows.push(el("tr", { class: "sys" }, el("td", { class: "idx" }, ""), el("td", { class: "fn" }, allocator), el("td"), el("td")));
    if (!frames || !frames.length) {
      rows.push(el("tr", null, el("td"), el("td", { colspan: 3, text: "(no stack recorded)" })));
    }
    (frames || []).forEach(function (f, i) {
      rows.push(el("tr", { class: SYSTEM.has(f.module) ? "sys" : "" },
        el("td", { class: "idx", text: "#" + i }),
        el("td", { class: "fn", text: f.function + (f.inlined ? " (inlined)" : "") }),
        el("td", { text: f.file ? f.file + (f.line ? ":" + f.line : "") : "" }),
        el("td", { text: f.module || "" })));
    });
    return el("table", { class: "stack" }, el("tbody", null, rows));
  }

  // A sortable table whose rows open their stack. cols: {title, get, fmt, num, cls}.
  // detail(row) returns the content of the opened row.
  function sortableTable(cols, rows, detail, sortIndex) {
    var state = { col: sortIndex === undefined ? -1 : sortIndex, desc: true };
    var open = new Set();
    var tbody = el("tbody");
    var heads = cols.map(function (c, i) {
      var arrow = el("span", { class: "arrow" });
      var th = el("th", { class: "sortable" + (c.num ? " num" : ""), title: "sort by " + c.title }, c.title, arrow);
      th.addEventListener("click", function () {
        if (state.col === i) state.desc = !state.desc;
        else { state.col = i; state.desc = !!c.num; }
        draw();
      });
      c.arrow = arrow;
      return th;
    });
    var order = rows.map(function (_, i) { return i; });
    function draw() {
      if (state.col >= 0) {
        var c = cols[state.col];
        order.sort(function (a, b) {
          var x = c.get(rows[a]), y = c.get(rows[b]);
          var r = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
          return (state.desc ? -r : r) || a - b;
        });
      }
      cols.forEach(function (c, i) { c.arrow.textContent = i === state.col ? (state.desc ? "▼" : "▲") : ""; });
      tbody.textContent = "";
      order.forEach(function (i) {
        var row = rows[i];
        var isOpen = open.has(i);
        var tr = el("tr", { class: "row" + (isOpen ? " open" : "") });
        cols.forEach(function (c, k) {
          var v = c.get(row);
          var td = el("td", { class: (c.num ? "num " : "") + (c.cls || "") });
          if (k === 0) td.appendChild(el("span", { class: "twisty", text: isOpen ? "▾" : "▸" }));
          add(td, c.fmt ? c.fmt(v, row) : v);
          tr.appendChild(td);
        });
        tr.addEventListener("click", function () {
          if (open.has(i)) open.delete(i); else open.add(i);
          draw();
        });
        tbody.appendChild(tr);
        if (isOpen) tbody.appendChild(el("tr", { class: "detail" }, el("td", { colspan: cols.length }, detail(row))));
      });
    }
    draw();
    return el("div", { class: "table-wrap" }, el("table", { class: "sites" }, el("thead", null, el("tr", null, heads)), tbody));
  }

  function siteDetail(site) {
    return stackTable(site.stack, site.allocator);
  }

  // ---------------------------------------------------------------------------------
  // Title and summary

  function drawTitle() {
    var t = R.trace;
    var w = R.window;
    var exit = "unknown (no end record)";
    if (t.exit) {
      exit = { exit: "exited with status " + t.exit.code, _exit: "called _exit(" + t.exit.code + ")",
        signal: "killed by signal " + t.exit.code, exec: "replaced itself with exec",
        snapshot: "still running (a snapshot of the live process)", detach: "ran on: memlens detached" }[t.exit.kind] || t.exit.kind;
    }
    var box = $("title-block");
    add(box, el("h1", null, "Memory report of ", el("code", { text: t.exe || "?" })));
    add(box, el("div", { class: "meta" },
      el("span", null, "command ", el("b", { class: "mono", text: (t.argv || []).join(" ") || "?" })),
      el("span", null, "pid ", el("b", { text: String(t.pid) })),
      el("span", null, "ended: ", el("b", { text: exit })),
      el("span", null, SNAPSHOT ? "paused " : "runtime ", el("b", { text: time(R.totals.runtime_ms) })),
      el("span", null, "trace ", el("b", { class: "mono", text: t.path }))));
    if (!w.whole_run) {
      add(box, el("div", { class: "banner warn", text: "Window: " + time(w.from_ms) + " .. " + time(w.to_ms) + " of a " + time(w.run_ms) + " run. Only allocations made in it are counted; \"not freed\" means allocated in it and live at its end." }));
    }
    if (SNAPSHOT) add(box, el("div", { class: "banner", text: "A heap snapshot: the blocks live in the running process at one moment. There is no history of allocations and frees, so no peak, temporaries or growth." }));
    if (t.truncated) add(box, el("div", { class: "banner bad", text: "The trace was cut short: " + t.truncated }));
    if (t.sampling) add(box, el("div", { class: "banner warn", text: "Every figure on this page is " + t.sampling.note + ". Temporary allocations are not counted, and there are " + t.sampling.leak_kinds + "." }));
    (t.warnings || []).forEach(function (m) { add(box, el("div", { class: "banner warn", text: "Warning: " + m })); });
  }

  function card(label, value, sub, cls) {
    return el("div", { class: "card" + (cls ? " " + cls : "") },
      el("div", { class: "label", text: label }),
      el("div", { class: "value", text: value }),
      sub ? el("div", { class: "sub", text: sub }) : null);
  }

  function drawSummary() {
    var t = R.totals;
    var L = D.leaks && D.leaks.summary;
    var cards = [
      card("Allocations", count(t.allocations), count(t.frees) + " frees, " + count(t.reallocs) + " reallocs"),
      card("Bytes allocated", bytes(t.bytes_allocated), "over " + time(t.runtime_ms)),
      card("Peak heap", bytes(t.peak_heap_bytes), "at " + time(t.peak_heap_time_ms) + ", " + plural(R.peak.blocks, "block", "blocks")),
      card("Peak RSS", t.peak_rss_bytes === null ? "–" : bytes(t.peak_rss_bytes), t.peak_rss_bytes === null ? "no RSS samples" : "at " + time(t.peak_rss_time_ms)),
      card(SNAPSHOT ? "Live at the snapshot" : "Not freed at exit", bytes(t.not_freed_bytes), plural(t.not_freed_blocks, "block", "blocks"), t.not_freed_bytes > 0 ? "warn" : ""),
      card("Temporary", count(t.temporary), pct(t.temporary, t.allocations) + " of allocations"),
    ];
    if (L) {
      var leaked = L.definitely_lost.bytes + L.indirectly_lost.bytes;
      cards.push(card("Leaked", bytes(leaked), "definitely + indirectly lost, " + plural(L.definitely_lost.blocks + L.indirectly_lost.blocks, "block", "blocks"), leaked > 0 ? "bad" : ""));
    }
    if (R.growth.site_count > 0) {
      cards.push(card("Growing sites", count(R.growth.site_count), "live memory keeps rising", "bad"));
    }
    var body = $("summary-body");
    add(body, el("div", { class: "cards" }, cards));
    var left = el("div"), right = el("div");
    add(body, el("div", { class: "two" }, left, right));
    add(left, el("h3", { text: "Heap vs RSS" }));
    var h = R.heap_vs_rss;
    if (!h) {
      add(left, el("p", { class: "empty", text: "No RSS samples in this window (memlens run --rss-interval)." }));
    } else {
      var moments = [["at the RSS peak", h.at_peak_rss], ["near the heap's peak", h.at_peak_heap], ["at the end", h.at_end]]
        .filter(function (m) { return m[1]; });
      var keys = [["RSS", "rss_bytes"], ["heap in use", "heap_bytes"], ["malloc overhead (est.)", "overhead_bytes"], ["resident before the heap", "baseline_bytes"], ["other", "other_bytes"]];
      add(left, el("div", { class: "table-wrap" }, el("table", { class: "hvr" },
        el("thead", null, el("tr", null, el("th"), moments.map(function (m) { return el("th", { class: "num" }, m[0], el("div", { class: "muted", text: time(m[1].time_ms) })); }))),
        el("tbody", null, keys.map(function (k) {
          return el("tr", null, el("td", { text: k[0] }), moments.map(function (m) { return el("td", { class: "num", text: bytes(m[1][k[1]]) }); }));
        })))));
      add(left, el("ul", { class: "findings" }, (h.findings || []).map(function (f) { return el("li", { text: f }); })));
    }
    add(right, el("h3", { text: "Leak summary" }));
    if (!L) {
      add(right, el("p", { class: "empty", text: "No leak check: the trace has no exit scan (killed, exec, --leak-check=no) or the window ends before the run." }));
    } else {
      var rows = [["definitely lost", "definitely_lost"], ["indirectly lost", "indirectly_lost"], ["possibly lost", "possibly_lost"], ["still reachable", "still_reachable"], ["suppressed", "suppressed"]];
      add(right, el("table", null, el("tbody", null, rows.map(function (r) {
        return el("tr", null, el("td", { text: r[0] }), el("td", { class: "num", text: bytes(L[r[1]].bytes) }), el("td", { class: "num", text: plural(L[r[1]].blocks, "block", "blocks") }));
      }))));
    }
  }

  // ---------------------------------------------------------------------------------
  // Timeline

  var COLORS = ["#2f6fdf", "#d23c3c", "#f08a24", "#2ca05a", "#8e5bd0", "#8c5a4b", "#d65fb0", "#6f7f8f", "#aab02a", "#1fb3c7", "#3b4aa0", "#5f7a1f"];

  function niceStep(span, ticks) {
    var raw = span / ticks, mag = Math.pow(10, Math.floor(Math.log10(raw))), n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }
  function niceBytesStep(max) {
    var unit = 1;
    while (max / unit >= 1024 && unit < Math.pow(1024, 4)) unit *= 1024;
    return niceStep(max / unit, 5) * unit;
  }

  function drawTimeline() {
    var T = D.timeline, body = $("timeline-body");
    var n = T.heap.length;
    if (!n) { add(body, el("p", { class: "empty", text: "No events in this window." })); return; }
    var W = 1000, H = 300, L = 74, Rm = 16, Tp = 12, B = 34;
    var pw = W - L - Rm, ph = H - Tp - B;
    var mid = function (i) { var a = T.times_ms[i], b = i + 1 < n ? T.times_ms[i + 1] : T.to_ms; return (a + b) / 2; };
    var series = [{ label: "heap in use", color: COLORS[0], values: T.heap, width: 2.2, fill: true }];
    var rssMax = Math.max.apply(null, T.rss.map(function (v) { return v === null ? 0 : v; }));
    var heapMax = Math.max.apply(null, T.heap);
    // RSS counts memlens's own memory and what was resident before the heap: when it
    // would flatten the heap's curve, it starts hidden (one click on its legend shows it).
    series.push({ label: rssMax ? "RSS" : "RSS (no samples)", color: COLORS[1], values: T.rss, width: 2, hidden: rssMax > 4 * heapMax && heapMax > 0 });
    T.sites.forEach(function (s, i) {
      series.push({ label: s.at + " (" + s.allocator + ")", peak: s.peak_bytes, color: COLORS[2 + i % (COLORS.length - 2)], values: s.values, width: 1.4, mono: true });
    });
    var t0 = T.from_ms, t1 = Math.max(T.to_ms, t0 + 1e-6);
    var tdiv = t1 >= 2000 ? 1000 : 1, tunit = tdiv === 1000 ? "s" : "ms";
    var x = function (t) { return L + pw * (t - t0) / (t1 - t0); };
    var chart = el("div", { class: "chart" });
    var legend = el("div", { class: "legend" });
    add(body, chart);
    add(body, legend);
    add(body, el("p", { class: "note", text: "Each point is the highest value in its bucket of " + time((t1 - t0) / n) + ", so short spikes stay visible. Sites: the largest at the heap's peak and the fastest growing. Click a legend entry to hide or show its line." }));

    function render() {
      chart.textContent = "";
      var shown = series.filter(function (s) { return !s.hidden; });
      var max = 1024;
      shown.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
      var step = niceBytesStep(max * 1.05);
      var top = Math.ceil(max * 1.05 / step) * step;
      var y = function (v) { return Tp + ph * (1 - v / top); };
      var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "heap, RSS and top sites over time" });
      var grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
      root.appendChild(grid); root.appendChild(axis);
      for (var v = 0; v <= top + step / 2; v += step) {
        grid.appendChild(svg("line", { x1: L, x2: W - Rm, y1: y(v), y2: y(v) }));
        axis.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", text: bytes(v) }));
      }
      var ts = niceStep((t1 - t0) / tdiv, 8);
      for (var s = Math.ceil(t0 / tdiv / ts) * ts; s <= t1 / tdiv + ts * 1e-9; s += ts) {
        grid.appendChild(svg("line", { x1: x(s * tdiv), x2: x(s * tdiv), y1: Tp, y2: Tp + ph }));
        axis.appendChild(svg("text", { x: x(s * tdiv), y: Tp + ph + 15, "text-anchor": "middle", text: +s.toPrecision(6) + " " + tunit }));
      }
      root.appendChild(svg("rect", { x: L, y: Tp, width: pw, height: ph, fill: "none", stroke: "#c5ccd6" }));
      shown.slice().reverse().forEach(function (s) {
        var pts = [];
        s.values.forEach(function (v, i) { if (v !== null) pts.push(x(mid(i)).toFixed(1) + "," + y(v).toFixed(1)); });
        if (!pts.length) return;
        if (s.fill && pts.length > 1) {
          var first = pts[0].split(","), last = pts[pts.length - 1].split(",");
          root.appendChild(svg("polygon", { points: first[0] + "," + y(0) + " " + pts.join(" ") + " " + last[0] + "," + y(0), fill: s.color, "fill-opacity": "0.10" }));
        }
        if (pts.length === 1) {
          var p = pts[0].split(",");
          root.appendChild(svg("circle", { cx: p[0], cy: p[1], r: 3, fill: s.color }));
        } else {
          root.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": s.width, "stroke-linejoin": "round" }));
        }
      });
      // The peak of the heap.
      var pk = R.totals.peak_heap_time_ms;
      if (pk >= t0 && pk <= t1) {
        var right = x(pk) > W - 160;
        root.appendChild(svg("line", { x1: x(pk), x2: x(pk), y1: Tp, y2: Tp + ph, stroke: COLORS[0], "stroke-dasharray": "4 3", "stroke-opacity": "0.6" }));
        root.appendChild(svg("text", { x: x(pk) + (right ? -4 : 4), y: Tp + 12, fill: COLORS[0], "font-size": "11", "text-anchor": right ? "end" : "start", text: "heap peak " + bytes(R.totals.peak_heap_bytes) }));
      }
      // Hover: a cursor and the values of the bucket under it.
      var cursor = svg("line", { y1: Tp, y2: Tp + ph, stroke: "#1d2330", "stroke-opacity": "0.35", visibility: "hidden" });
      root.appendChild(cursor);
      var hit = svg("rect", { x: L, y: Tp, width: pw, height: ph, fill: "transparent" });
      root.appendChild(hit);
      hit.addEventListener("mousemove", function (ev) {
        var r = root.getBoundingClientRect();
        var px = (ev.clientX - r.left) * W / r.width;
        var t = t0 + (px - L) / pw * (t1 - t0);
        var i = 0;
        while (i + 1 < n && T.times_ms[i + 1] <= t) i++;
        cursor.setAttribute("x1", x(mid(i))); cursor.setAttribute("x2", x(mid(i)));
        cursor.setAttribute("visibility", "visible");
        var lines = [el("div", null, el("b", { text: time(T.times_ms[i]) + " .. " + time(i + 1 < n ? T.times_ms[i + 1] : T.to_ms) }))];
        shown.forEach(function (s) {
          if (s.values[i] === null) return;
          lines.push(el("div", null, el("span", { style: "color:" + s.color, text: "■ " }), s.mono ? el("span", { class: "mono", text: s.label }) : s.label, ": " + bytes(s.values[i])));
        });
        showTip(ev, lines);
      });
      hit.addEventListener("mouseleave", function () { cursor.setAttribute("visibility", "hidden"); hideTip(); });
      chart.appendChild(root);
      legend.textContent = "";
      series.forEach(function (s) {
        var item = el("div", { class: "item" + (s.hidden ? " off" : ""), title: s.hidden ? "show this line" : "hide this line" },
          el("span", { class: "swatch", style: "background:" + s.color }),
          s.mono ? el("span", { class: "mono", text: s.label }) : el("span", { text: s.label }),
          s.peak !== undefined ? el("span", { class: "muted", text: "peak " + bytes(s.peak) }) : null,
          s.hidden ? el("span", { class: "muted", text: "(hidden)" }) : null);
        item.addEventListener("click", function () { s.hidden = !s.hidden; render(); });
        legend.appendChild(item);
      });
    }
    render();
  }

  // ---------------------------------------------------------------------------------
  // Tooltip

  function showTip(ev, content) {
    var tip = $("tooltip");
    tip.textContent = "";
    add(tip, content);
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = Math.max(8, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 8) y = Math.max(8, ev.clientY - h - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { $("tooltip").hidden = true; }

  // ---------------------------------------------------------------------------------
  // Flame graph (an icicle: callers on top, the allocating function at the bottom)

  var F = D.flame;
  var ROW = 18;

  function buildTree(metric) {
    var root = { name: "all", value: 0, children: new Map(), parent: null, depth: 0 };
    metric.stacks.forEach(function (pair) {
      var node = root, v = pair[1];
      root.value += v;
      F.stacks[pair[0]].forEach(function (fi) {
        var name = F.frames[fi];
        var c = node.children.get(name);
        if (!c) { c = { name: name, value: 0, children: new Map(), parent: node, depth: node.depth + 1 }; node.children.set(name, c); }
        c.value += v;
        node = c;
      });
      node.leaf = true;
    });
    return root;
  }

  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h;
  }
  var ALLOCATORS = /^(malloc|calloc|realloc|free|aligned_alloc|memalign|posix_memalign|valloc|pvalloc|reallocarray|strdup|strndup|operator new|operator new\[\]|\[.*\])$/;
  function color(node) {
    if (!node.children.size && ALLOCATORS.test(node.name)) return "hsl(210, 18%, 78%)";
    if (node.name.charAt(0) === "[") return "hsl(0, 0%, 82%)";
    var h = hue(node.name);
    return "hsl(" + (8 + h % 42) + ", " + (72 + (h >> 8) % 18) + "%, " + (60 + (h >> 16) % 14) + "%)";
  }

  function drawFlame() {
    var body = $("flame-body");
    var metrics = F.metrics.filter(function (m) { return m.known; });
    var select = el("select", { "aria-label": "metric" }, metrics.map(function (m) {
      var title = SNAPSHOT ? m.title.replace(" at exit (not freed)", " at the snapshot").replace(" at exit", " at the snapshot") : m.title;
      return el("option", { value: m.name, text: title + " (" + unitValue(m.unit, m.total) + ")" });
    }));
    var initial = ["peak", "allocated", "allocations"].map(function (n) {
      return metrics.filter(function (m) { return m.name === n && m.total > 0; })[0];
    }).filter(Boolean)[0] || metrics[0];
    select.value = initial.name;
    var search = el("input", { type: "search", placeholder: "search functions (regex)", "aria-label": "search" });
    var reset = el("button", { type: "button", text: "Reset zoom" });
    var info = el("span", { class: "flame-info" });
    var graph = el("div", { class: "flame", id: "flame-graph" });
    add(body, el("div", { class: "flame-controls" }, el("label", null, "Metric ", select), search, reset, info));
    add(body, graph);
    add(body, el("p", { class: "note", text: "Each box is a function, as wide as the metric's value in the stacks through it; callers above their callees, the allocating function at the bottom of each stack. Click a box to zoom in to it, a box above it to zoom out; hover for values. Sites with the same function names are added together." }));

    var metric, tree, zoom;
    function matcher() {
      var q = search.value.trim();
      if (!q) return null;
      try { return new RegExp(q, "i"); } catch (e) {
        var low = q.toLowerCase();
        return { test: function (s) { return s.toLowerCase().indexOf(low) >= 0; } };
      }
    }
    function setMetric(name) {
      metric = metrics.filter(function (m) { return m.name === name; })[0];
      tree = buildTree(metric);
      zoom = tree;
      draw();
    }
    function draw() {
      graph.textContent = "";
      hideTip();
      if (!tree.value) {
        graph.style.height = "auto";
        add(graph, el("p", { class: "empty", style: "padding: 10px", text: "Nothing to show: no site has any " + metric.title + "." }));
        info.textContent = "";
        return;
      }
      var re = matcher();
      var matched = 0;
      var boxes = [];
      // Ancestors of the zoomed node: full width, faded.
      var chain = [];
      for (var a = zoom; a; a = a.parent) chain.unshift(a);
      chain.forEach(function (node, d) { boxes.push({ node: node, x: 0, w: 1, d: d, anc: node !== zoom }); });
      var base = chain.length - 1;
      var maxDepth = base;
      (function walk(node, x, d, counted) {
        var hit = re && d > base && re.test(node.name);
        if (hit && !counted) { matched += node.value; counted = true; }
        if (d > base) boxes.push({ node: node, x: x, w: node.value / zoom.value, d: d, match: hit });
        if (d > maxDepth) maxDepth = d;
        var kids = Array.from(node.children.values()).sort(function (p, q) { return q.value - p.value || (p.name < q.name ? -1 : 1); });
        var cx = x;
        kids.forEach(function (k) {
          var w = k.value / zoom.value;
          if (w >= 0.0005) walk(k, cx, d + 1, counted);
          cx += w;
        });
      })(zoom, 0, base, false);
      if (re && zoom.depth === 0 && re.test("all")) matched = zoom.value;
      graph.style.height = ((maxDepth + 1) * ROW + 2) + "px";
      var frag = document.createDocumentFragment();
      boxes.forEach(function (b) {
        var n = b.node;
        var div = el("div", { class: "box" + (b.anc ? " ancestor" : "") + (b.match ? " match" : "") + (re && !b.match && !b.anc ? " dim" : "") });
        div.style.left = (100 * b.x) + "%";
        div.style.width = (100 * b.w) + "%";
        div.style.top = (b.d * ROW) + "px";
        div.style.background = n.depth === 0 ? "hsl(215, 25%, 86%)" : color(n);
        div.textContent = n.depth === 0 ? "all: " + unitValue(metric.unit, n.value) : n.name;
        div.addEventListener("click", function () { zoom = n; draw(); });
        div.addEventListener("mousemove", function (ev) {
          var self = 0;
          n.children.forEach(function (c) { self += c.value; });
          showTip(ev, [
            el("div", { class: "mono", text: n.name }),
            el("div", { text: unitValue(metric.unit, n.value) + " (" + pct(n.value, tree.value) + " of all" + (zoom !== tree ? ", " + pct(n.value, zoom.value) + " of the zoomed box" : "") + ")" }),
            n.value - self > 0 && n.children.size ? el("div", { class: "muted", text: unitValue(metric.unit, n.value - self) + " allocated by this function itself" }) : null,
          ]);
        });
        div.addEventListener("mouseleave", hideTip);
        frag.appendChild(div);
      });
      graph.appendChild(frag);
      var parts = [unitValue(metric.unit, tree.value) + " in " + plural(metric.stacks.length, "stack", "stacks")];
      if (metric.merged_stacks) parts.push("the " + count(metric.merged_stacks) + " smallest stacks are added together into one box");
      if (zoom !== tree) parts.push("zoomed to " + zoom.name + ": " + pct(zoom.value, tree.value));
      if (re) parts.push("matched: " + unitValue(metric.unit, matched) + " (" + pct(matched, tree.value) + ")");
      info.textContent = parts.join(" · ");
    }
    select.addEventListener("change", function () { setMetric(select.value); });
    search.addEventListener("input", draw);
    reset.addEventListener("click", function () { zoom = tree; draw(); });
    setMetric(initial.name);
  }

  // ---------------------------------------------------------------------------------
  // Site tables

  var atCol = { title: "site (first frame in the program's code)", get: siteAt, cls: "loc" };
  var allocCol = { title: "allocator", get: function (s) { return s.allocator; } };
  function numCol(title, key, fmt) {
    return { title: title, num: true, get: typeof key === "function" ? key : function (s) { return s[key]; }, fmt: fmt || count };
  }

  // The element a section of the report is drawn in (the `page` of its row in the
  // report's section table, cli/src/report/sections.rs).
  function pageOf(key) {
    var s = D.sections.filter(function (x) { return x.key === key; })[0];
    return s ? s.page : key;
  }

  function drawSites() {
    var body = $("sites-body");
    var hot = [];
    var seen = new Set();
    R.hotspots.by_allocations.concat(R.hotspots.by_bytes).forEach(function (s) {
      var k = JSON.stringify([s.allocator, s.stack]);
      if (!seen.has(k)) { seen.add(k); hot.push(s); }
    });
    var lists = [
      { key: "peak", title: "Peak heap", total: R.peak.site_count, rows: R.peak.sites,
        note: "The heap at its peak (" + bytes(R.peak.bytes) + " at " + time(R.peak.time_ms) + "), by site.",
        cols: [atCol, allocCol, numCol("live at peak", "live_bytes", bytes), numCol("blocks", "live_blocks"),
          numCol("% of peak", function (s) { return R.peak.bytes ? s.live_bytes / R.peak.bytes : 0; }, function (v) { return (100 * v).toFixed(1) + "%"; }),
          numCol("allocations", "allocations"), numCol("bytes allocated", "bytes_allocated", bytes)], sort: 2 },
      { key: "not_freed", title: SNAPSHOT ? "Live at the snapshot" : "Not freed at exit", total: R.not_freed.site_count, rows: R.not_freed.sites,
        note: bytes(R.not_freed.bytes) + " in " + plural(R.not_freed.blocks, "block", "blocks") + " allocated " + (R.window.whole_run ? "in the run" : "in the window") + " and still live at its end.",
        cols: [atCol, allocCol, numCol("bytes", "live_bytes", bytes), numCol("blocks", "live_blocks"), numCol("allocations", "allocations"), numCol("bytes allocated", "bytes_allocated", bytes)], sort: 2 },
      { key: "hotspots", title: "Hotspots", total: R.hotspots.site_count, rows: hot,
        note: "The sites with the most allocations and with the most bytes allocated.",
        cols: [atCol, allocCol, numCol("allocations", "allocations"), numCol("bytes allocated", "bytes_allocated", bytes), numCol("temporary", "temporary"), numCol("live at end", "live_bytes", bytes)], sort: 2 },
      { key: "temporary", title: "Temporary", total: R.temporary.site_count, rows: R.temporary.sites,
        note: count(R.temporary.count) + " temporary allocations (" + (100 * R.temporary.fraction).toFixed(1) + "%): freed before their thread allocated anything else.",
        cols: [atCol, allocCol, numCol("temporary", "temporary"), numCol("temporary bytes", "temporary_bytes", bytes),
          numCol("% of its allocations", "temporary_fraction", function (v) { return (100 * v).toFixed(0) + "%"; }), numCol("allocations", "allocations")], sort: 2 },
      { key: "growth", title: "Growth", total: R.growth.site_count, rows: R.growth.sites,
        note: "Sites whose live memory keeps rising (floors of live bytes in " + R.growth.intervals + " intervals of " + time(R.growth.interval_ms) + "; " + plural(R.growth.sites_judged, "site", "sites") + " judged). Reachable, so no leak check calls them lost, but never given back.",
        cols: [atCol, allocCol, numCol("rate", "rate_bytes_per_sec", rate), numCol("confidence", "confidence", function (v) { return (100 * v).toFixed(1) + "%"; }),
          numCol("floor from", "start_bytes", bytes), numCol("to", "max_bytes", bytes),
          numCol("over", "grew_over_fraction", function (v) { return (100 * v).toFixed(0) + "% of the run"; }), numCol("live at end", "live_bytes", bytes)], sort: 2 },
    ];
    var tabs = el("div", { class: "tabs", role: "tablist" });
    var panes = el("div");
    add(body, tabs);
    add(body, panes);
    var buttons = [];
    lists.forEach(function (l, i) {
      var pane = el("div", { class: "pane", id: pageOf(l.key) });
      add(pane, el("p", { class: "note", text: l.note }));
      if (!l.rows.length) add(pane, el("p", { class: "empty", text: "No sites." }));
      else add(pane, sortableTable(l.cols, l.rows, siteDetail, l.sort));
      if (l.total > l.rows.length) add(pane, el("p", { class: "note", text: "The first " + count(l.rows.length) + " of " + count(l.total) + " sites (memlens html --top)." }));
      pane.hidden = i !== 0;
      panes.appendChild(pane);
      var b = el("button", { type: "button", role: "tab" }, l.title, el("span", { class: "count", text: count(l.total) }));
      b.addEventListener("click", function () {
        buttons.forEach(function (x, k) { x.classList.toggle("active", k === i); panes.children[k].hidden = k !== i; });
      });
      if (i === 0) b.classList.add("active");
      buttons.push(b);
      tabs.appendChild(b);
    });
    add(body, el("p", { class: "note", text: "Click a column to sort, a row to see its stack." }));
  }

  // ---------------------------------------------------------------------------------
  // Leaks

  var KIND = {
    definitely_lost: ["definitely lost", "definite"], indirectly_lost: ["indirectly lost", "indirect"],
    possibly_lost: ["possibly lost", "possible"], still_reachable: ["still reachable", "reachable"],
  };

  function drawLeaks() {
    var body = $("leaks-body");
    $("leaks-title").textContent = "Leaks " + AT_END;
    var Lk = D.leaks;
    if (!Lk || !Lk.scan) {
      add(body, el("p", { class: "empty", text: "No leak check for this trace: the process was killed, replaced itself with exec, was run with --leak-check=no, or the window ends before the run does." }));
      return;
    }
    add(body, el("p", { class: "note", text: "Memcheck's leak kinds, from the scan of the process's memory " + AT_END + " (" + plural(Lk.scan.stopped_threads, "other thread", "other threads") + " stopped). Records with the same kind, allocator and stack are merged." }));
    if (!Lk.records.length) add(body, el("p", { class: "empty", text: "No loss records." }));
    else {
      add(body, sortableTable([
        { title: "kind", get: function (r) { return KIND[r.kind] ? KIND[r.kind][0] : r.kind; }, fmt: function (v, r) { return el("span", { class: "pill " + (KIND[r.kind] ? KIND[r.kind][1] : ""), text: v }); } },
        { title: "site (first frame in the program's code)", get: siteAt, cls: "loc" },
        allocCol,
        numCol("bytes", "bytes", bytes), numCol("blocks", "blocks"),
        numCol("+ indirectly lost", "indirect_bytes", bytes),
      ], Lk.records, function (r) {
        return el("div", null, stackTable(r.stack, r.allocator), r.kept_alive_by ? el("p", { class: "note", text: "kept alive by: " + r.kept_alive_by }) : null);
      }, 3));
      if (Lk.record_count > Lk.records.length) add(body, el("p", { class: "note", text: "The largest " + count(Lk.records.length) + " of " + count(Lk.record_count) + " loss records (memlens html --top)." }));
    }
    var errors = (Lk.errors || []).filter(function (e) { return !e.suppressed_by; });
    if (errors.length) {
      add(body, el("h3", { text: "Heap errors" }));
      add(body, sortableTable([
        { title: "error", get: function (e) { return e.kind.replace(/_/g, " "); }, fmt: function (v) { return el("span", { class: "pill definite", text: v }); } },
        { title: "where", get: siteAt, cls: "loc" },
        { title: "function", get: function (e) { return e.function; } },
        numCol("times", "count"),
      ], errors, function (e) {
        return el("div", null, stackTable(e.stack, e.function),
          e.allocation ? [el("p", { class: "note", text: "the block (" + bytes(e.allocation.size) + ") was allocated by " + e.allocation.allocator + " at:" }), stackTable(e.allocation.stack)] : null);
      }, 3));
    }
    if (Lk.used_suppressions && Lk.used_suppressions.length) {
      add(body, el("p", { class: "note", text: "Suppressed: " + Lk.used_suppressions.map(function (u) { return u.name + " (" + u.count + ", " + bytes(u.bytes) + ")"; }).join(", ") + "." }));
    }
  }

  // ---------------------------------------------------------------------------------
  // Advice

  function drawAdvice() {
    var body = $("advice-body");
    if (!R.advice.length) { add(body, el("p", { class: "empty", text: "No clear pattern to advise on." })); return; }
    add(body, sortableTable([
      { title: "kind", get: function (a) { return a.kind.replace(/_/g, " "); }, fmt: function (v, a) { return el("span", { class: "pill " + a.kind, text: v }); } },
      { title: "site", get: function (a) { return a.at; }, cls: "loc" },
      { title: "advice", get: function (a) { return a.message; } },
    ], R.advice, siteDetail));
  }

  function drawFooter() {
    add($("footer"), "memlens " + D.memlens_version + " · a self-contained page: nothing is loaded from the network · the data is the JSON of memlens report and memlens leaks (docs/REPORT_JSON.md, docs/LEAKS_JSON.md)");
  }

  drawTitle();
  drawSummary();
  drawTimeline();
  drawFlame();
  drawSites();
  drawLeaks();
  drawAdvice();
  drawFooter();
  document.body.dataset.rendered = "ok";
})();
