"use strict";
// The dashboard's page: everything is drawn from the JSON in #triage-data, with DOM calls and
// text nodes only (never innerHTML), so any text of a core stays text.
//
// The view is the URL fragment: `#sig=ID` opens the page of one signature, and `fleet`,
// `python`, `from` and `to` filter every count (`#sig=ID&fleet=web&from=2026-01-01`). Filters
// narrow what is counted; when a signature was first and last seen, and whether it is new, are
// facts of the whole dataset, as in `triage groups`.
(() => {
  const data = JSON.parse(document.getElementById("triage-data").textContent);
  // The SVG namespace, from the HTML parser (the page holds no URL at all).
  const SVG = document.createRange().createContextualFragment("<svg></svg>").firstChild
    .namespaceURI;
  const app = document.getElementById("app");
  const UNKNOWN = "unknown";
  const FILTERS = ["fleet", "python", "from", "to"];

  // -- helpers ---------------------------------------------------------------------------

  const h = (tag, props, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  const plural = (n, one, many) => n + " " + (n === 1 ? one : many || one + "s");
  const label = (value) => (value === null || value === undefined ? UNKNOWN : String(value));
  const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // [{name, cores}] of the values of `key`, most cores first, then in `order` (else by name).
  const counted = (items, key, order) => {
    const counts = new Map();
    for (const item of items) counts.set(label(item[key]), (counts.get(label(item[key])) || 0) + 1);
    const rank = (name) => ((order || []).includes(name) ? order.indexOf(name) : Infinity);
    return [...counts].map(([name, cores]) => ({ name, cores })).sort((a, b) =>
      b.cores - a.cores || rank(a.name) - rank(b.name) || byText(a.name, b.name));
  };
  const distinctKnown = (items, key) =>
    [...new Set(items.map((i) => i[key]).filter((v) => v !== null && v !== undefined))];

  const sparkline = (trend, sweeps) => {
    const w = 9, gap = 3, height = 24, max = Math.max(1, ...trend);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", String(Math.max(1, trend.length * (w + gap) - gap)));
    svg.setAttribute("height", String(height));
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "cores per sweep: " + trend.join(", "));
    svg.dataset.trend = trend.join(" ");
    trend.forEach((n, i) => {
      const bar = document.createElementNS(SVG, "rect");
      const barHeight = n ? Math.max(2, Math.round((n / max) * height)) : 2;
      bar.setAttribute("x", String(i * (w + gap)));
      bar.setAttribute("y", String(height - barHeight));
      bar.setAttribute("width", String(w));
      bar.setAttribute("height", String(barHeight));
      const last = i === trend.length - 1;
      bar.setAttribute("class", n ? (last ? "some latest" : "some") : "zero");
      const title = document.createElementNS(SVG, "title");
      const sweep = sweeps[i] || {};
      title.textContent = (sweep.id || "") + (sweep.date ? " (" + sweep.date + ")" : "") +
        ": " + plural(n, "core");
      bar.append(title);
      svg.append(bar);
    });
    return svg;
  };

  // -- the data --------------------------------------------------------------------------

  const columns = Object.keys(data.files);
  const files = data.files.core.map((_, i) =>
    Object.fromEntries(columns.map((name) => [name, data.files[name][i]])));
  const signatures = new Map(data.signatures.map((s) => [s.id, s]));
  const trendSweeps = data.sweeps.slice(-data.trend_sweeps);
  const latest = data.latest_sweep || "none";
  const isCore = (f) => f.status !== "not_core";
  const isFailed = (f) => f.status !== "ok" && f.status !== "not_core";
  const perSweep = (items, sweeps) =>
    sweeps.map((s) => items.filter((f) => f.sweep === s.id).length);

  // -- the fragment: which view, which filters -------------------------------------------

  const readState = () => {
    const params = new URLSearchParams(location.hash.slice(1));
    const state = { sig: params.get("sig") || "" };
    for (const name of FILTERS) state[name] = params.get(name) || "";
    return state;
  };
  const hashOf = (state) => {
    const params = new URLSearchParams();
    for (const name of ["sig", ...FILTERS]) if (state[name]) params.set(name, state[name]);
    return "#" + params.toString();
  };
  const matches = (f, state) =>
    (!state.fleet || f.fleet === state.fleet) &&
    (!state.python || label(f.python) === state.python) &&
    (!state.from || f.sweep_date >= state.from) &&
    (!state.to || f.sweep_date <= state.to);
  const sigLink = (state, id, ...children) =>
    h("a", { class: "sig-link", href: hashOf({ ...state, sig: id }) }, ...children);

  // -- header and filters ----------------------------------------------------------------

  const header = () => h("header", null,
    h("h1", null, "Crash triage"),
    h("p", { class: "meta" }, "Dataset ", h("code", { id: "dataset" }, data.dataset),
      " \u00b7 latest sweep ", h("code", { id: "latest-sweep" }, latest),
      " \u00b7 generated " + data.generated));

  const choice = (name, title, all, values, state) => {
    const options = values.includes(state[name]) || !state[name] ? values
      : [...values, state[name]];
    const select = h("select", { id: "filter-" + name, name },
      h("option", { value: "" }, all),
      options.map((v) => h("option", { value: v }, v)));
    select.value = state[name];
    select.addEventListener("change", () => { location.hash = hashOf({ ...state, [name]: select.value }); });
    return h("label", null, title + " ", select);
  };
  const dateInput = (name, title, state) => {
    const input = h("input", { type: "date", id: "filter-" + name, name });
    input.value = state[name];
    input.addEventListener("change", () => { location.hash = hashOf({ ...state, [name]: input.value }); });
    return h("label", null, title + " ", input);
  };
  const filterBar = (state, shown) => {
    const active = FILTERS.some((name) => state[name]);
    return h("form", { id: "filters", class: "filters panel" },
      choice("fleet", "Fleet", "all fleets", data.fleets, state),
      choice("python", "Python", "all versions", data.python_versions, state),
      dateInput("from", "Swept from", state),
      dateInput("to", "to", state),
      active ? h("a", { id: "filter-clear", href: hashOf({ sig: state.sig }) }, "clear filters")
        : null,
      h("span", { id: "filter-summary", class: "muted" },
        active ? shown.length + " of " + plural(files.length, "file") + " match"
          : plural(files.length, "file")));
  };

  // -- the overview ----------------------------------------------------------------------

  // Every signature with a core among `shown`, as `triage groups` orders them.
  const groupsOf = (shown) => {
    const bySig = new Map();
    for (const f of shown) {
      if (f.signature === null) continue;
      if (!bySig.has(f.signature)) bySig.set(f.signature, []);
      bySig.get(f.signature).push(f);
    }
    return [...bySig].map(([id, cores]) => ({ ...signatures.get(id), id, cores }))
      .sort((a, b) => b.cores.length - a.cores.length || byText(a.id, b.id));
  };

  const card = (key, value, text, extra, cls) =>
    h("div", { class: "card" + (cls ? " " + cls : ""), data: { total: key } },
      h("div", { class: "value" }, String(value)), h("div", { class: "label" }, text), extra);

  const cards = (shown, groups) => {
    const cores = shown.filter(isCore);
    const failed = shown.filter(isFailed);
    const fresh = groups.filter((g) => g.new).length;
    const unsigned = shown.filter((f) => f.status === "ok" && f.signature === null).length;
    const notCores = shown.length - cores.length;
    return h("div", { class: "cards" },
      card("cores", cores.length, "cores", data.sweeps.length
        ? h("div", { title: "cores per sweep" }, sparkline(perSweep(cores, trendSweeps), trendSweeps))
        : null),
      card("signatures", groups.length, "crash groups (signatures)"),
      card("new", fresh, "new in the latest sweep", null, fresh ? "alert" : ""),
      card("failed", failed.length, "failed analyses",
        h("ul", { id: "failed-statuses" }, counted(failed, "status").map((s) =>
          h("li", { data: { status: s.name, cores: s.cores } }, s.name + ": " + s.cores))),
        failed.length ? "bad" : ""),
      card("not_core", notCores, "files that are not cores"),
      card("unsigned", unsigned, "cores analysed without a signature"));
  };

  const newSection = (state, groups) => {
    const fresh = groups.filter((g) => g.new);
    return h("section", { id: "new" },
      h("h2", null, "New since the last sweep"),
      h("div", { class: "panel" }, fresh.length
        ? h("ul", { class: "list" }, fresh.map((g) =>
          h("li", { class: "new-item", data: { sig: g.id } },
            h("span", { class: "badge" }, "NEW"),
            h("span", { class: "count" }, plural(g.cores.length, "core")),
            sigLink(state, g.id, h("span", { class: "sig-text" }, g.text)), " ",
            h("span", { class: "sig-id" }, g.id))))
        : h("p", { class: "empty" }, "No new signatures in sweep " + latest + ".")));
  };

  const signatureTable = (state, groups) => {
    const shown = groups.slice(0, data.top);
    const search = h("input", { type: "search", id: "filter", placeholder: "search signatures" });
    const rows = shown.map((g, i) => h("tr", { class: "sig-row" + (g.new ? " is-new" : ""),
      data: { sig: g.id, cores: g.cores.length, search: [g.text, g.id,
        ...distinctKnown(g.cores, "fleet"), ...distinctKnown(g.cores, "python")]
        .join(" ").toLowerCase() } },
    h("td", { class: "num" }, String(i + 1)),
    h("td", null,
      g.new ? h("span", { class: "badge" }, "NEW") : null,
      sigLink(state, g.id, h("span", { class: "sig-text" }, g.text)),
      h("div", { class: "sig-id" }, g.id)),
    h("td", { class: "num sig-cores" }, String(g.cores.length)),
    h("td", { class: "num hosts" }, String(distinctKnown(g.cores, "host").length || "\u2013")),
    h("td", { class: "trend" }, sparkline(perSweep(g.cores, trendSweeps), trendSweeps)),
    h("td", { class: "fleets" }, data.fleets.filter((n) => g.cores.some((f) => f.fleet === n))
      .join(", ")),
    h("td", { class: "pythons" }, data.python_versions
      .filter((v) => g.cores.some((f) => f.python === v)).join(", ")),
    h("td", { class: "seen" }, g.first_seen === g.last_seen ? g.first_seen
      : g.first_seen + " \u2192 " + g.last_seen)));
    const head = h("tr", null, h("th", { class: "num" }, "#"), h("th", null, "Signature"),
      h("th", { class: "num" }, "Cores"), h("th", { class: "num" }, "Hosts"),
      h("th", { title: "cores per sweep, oldest first" },
        "Last " + plural(trendSweeps.length, "sweep")),
      h("th", null, "Fleets"), h("th", null, "Python"), h("th", null, "Seen"));
    const hidden = groups.slice(data.top);
    const count = h("span", { class: "muted", id: "search-count" });
    search.addEventListener("input", () => {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      let visible = 0;
      for (const row of rows) {
        const match = words.every((w) => row.dataset.search.includes(w));
        row.hidden = !match;
        visible += match;
      }
      count.textContent = words.length ? visible + " of " + rows.length : "";
    });
    return h("section", { id: "signatures" },
      h("h2", null, "Top signatures"),
      h("div", { class: "panel" },
        shown.length ? h("div", { class: "toolbar" }, search, count) : null,
        shown.length
          ? h("table", { id: "signature-table" }, h("thead", null, head), h("tbody", null, rows))
          : h("p", { class: "empty" }, "No signatures among these cores."),
        hidden.length ? h("p", { class: "muted" }, "and " + plural(hidden.length,
          "more signature") + " (" + plural(hidden.reduce((a, g) => a + g.cores.length, 0),
          "core") + ") not shown: see triage groups.") : null));
  };

  // A table of counts: one row per item, a column per count, a bar for the first.
  const countTable = (id, title, items, counts) => {
    const max = Math.max(1, ...items.map((i) => i[counts[0][0]]));
    return h("table", { id },
      h("thead", null, h("tr", null, h("th", null, title),
        counts.map(([, heading]) => h("th", { class: "num" }, heading)), h("th", null, ""))),
      h("tbody", null, items.map((i) => {
        const bar = h("div", { class: "bar" });
        bar.style.width = (100 * i[counts[0][0]] / max).toFixed(1) + "%";
        return h("tr", { data: { name: i.name, cores: i[counts[0][0]] } },
          h("td", { class: "name" + (i.name === UNKNOWN ? " muted" : "") }, i.name),
          counts.map(([key]) => h("td", { class: "num " + key }, String(i[key]))),
          h("td", { class: "barcell" }, bar));
      })));
  };
  const CORES = [["cores", "Cores"]];

  // Per fleet with files among `shown`: its cores, failed analyses and files not cores.
  const fleetCounts = (shown) => data.fleets.map((name) => {
    const mine = shown.filter((f) => f.fleet === name);
    return { name, files: mine.length, cores: mine.filter(isCore).length,
      failed: mine.filter(isFailed).length, not_core: mine.filter((f) => !isCore(f)).length };
  }).filter((s) => s.files).sort((a, b) => b.cores - a.cores);

  const splits = (shown) => {
    const cores = shown.filter(isCore);
    const fleets = fleetCounts(shown);
    const panel = (table, title) => h("div", { class: "panel" }, h("h2", null, title), table);
    return h("section", { id: "splits", class: "splits" },
      panel(countTable("by-fleet", "Fleet", fleets,
        [...CORES, ["failed", "Failed"], ["not_core", "Not cores"]]), "Fleet"),
      panel(countTable("by-python", "Python version",
        counted(cores, "python", data.python_versions), CORES), "Python version"),
      panel(countTable("by-signal", "Signal", counted(cores, "reason"), CORES), "Signal"),
      panel(countTable("by-status", "Analysis status", counted(shown, "status"),
        [["cores", "Files"]]), "Analysis status"));
  };

  const overview = (state, shown) => {
    const groups = groupsOf(shown);
    return h("div", { id: "overview" }, cards(shown, groups), newSection(state, groups),
      signatureTable(state, groups), splits(shown));
  };

  // -- the page of one signature ---------------------------------------------------------

  const facts = (pairs) => h("dl", { class: "facts" }, pairs.map(([key, name, value]) =>
    h("div", { data: { fact: key } }, h("dt", null, name), h("dd", null, String(value)))));

  // Every sweep the signature has a core in (whatever the filters), and its cores there.
  const timeline = (sig, cores) => {
    const seen = new Set(files.filter((f) => f.signature === sig.id).map((f) => f.sweep));
    const sweeps = data.sweeps.filter((s) => seen.has(s.id));
    const counts = perSweep(cores, sweeps);
    return h("div", { class: "panel" }, h("h2", null, "Timeline"),
      h("div", { class: "spark-wide" }, sparkline(counts, sweeps)),
      h("table", { id: "sig-timeline" },
        h("thead", null, h("tr", null, h("th", null, "Sweep"), h("th", null, "Date"),
          h("th", { class: "num" }, "Cores"))),
        h("tbody", null, sweeps.map((s, i) => h("tr", { data: { sweep: s.id, cores: counts[i] } },
          h("td", { class: "mono" }, s.id), h("td", null, s.date),
          h("td", { class: "num" }, String(counts[i])))))));
  };

  const threadBlock = (thread) => h("div", { class: "thread", data: { tid: label(thread.tid) } },
    h("h3", { class: "thread-head" }, "Thread " + label(thread.tid) +
      (thread.name ? " (" + thread.name + ")" : "") + (thread.crashed ? ", crashed" : "") +
      (thread.status.length ? " [" + thread.status.join(", ") + "]" : "")),
    h("pre", { class: "frames" }, thread.lines.join("\n")),
    thread.exceptions.map((e) => h("div", { class: "exception" },
      h("div", { class: "exc-head" }, h("span", { class: "exc-state" }, e.state), " ",
        h("code", { class: "exc-text" }, e.message ? e.type + ": " + e.message : e.type)),
      e.lines.length ? h("pre", { class: "exc-frames" }, e.lines.join("\n")) : null)));

  const stackPanel = (sig) => {
    const example = sig.example;
    if (!example || !example.threads.length) return h("div", { class: "panel", id: "sig-stack" },
      h("h2", null, "Stack"),
      h("p", { class: "empty" }, "No stack recorded."));
    return h("div", { class: "panel", id: "sig-stack" },
      h("h2", null, example.tops ? "Stacks" : "Stack"),
      h("p", { class: "muted" }, (example.tops
        ? "The signature is made of the top frame of every Python thread of "
        : "The thread the signature was taken from, in ") + "the example core ",
      h("code", { id: "example-core" }, example.core), "."),
      example.threads.map(threadBlock));
  };

  const coresTable = (cores) => h("div", { class: "panel" },
    h("h2", null, "Cores"),
    h("p", { class: "muted" }, "Made: when the collector says the core was made, else the " +
      "file's modification time (mtime). Reproduce: run where the core is (a core in an " +
      "object store: download it first; the command names its file)."),
    h("table", { id: "sig-cores" },
      h("thead", null, h("tr", null, ["Core", "Host", "Made", "Swept", "Python", "Fleet",
        "Reproduce"].map((name) => h("th", null, name)))),
      h("tbody", null, cores.map((f) => h("tr", { data: { core: f.core } },
        h("td", { class: "core mono" }, f.core),
        h("td", { class: "host" + (f.host === null ? " muted" : "") }, label(f.host)),
        h("td", { class: "made" }, f.made === null ? UNKNOWN
          : f.made + (f.made_from === "mtime" ? " (mtime)" : "")),
        h("td", { class: "swept" }, f.sweep_date),
        h("td", { class: "python" }, label(f.python)),
        h("td", { class: "fleet" }, f.fleet),
        h("td", null, h("code", { class: "repro" }, f.command)))))));

  const signaturePage = (state, shown) => {
    const sig = signatures.get(state.sig);
    const back = h("a", { id: "back", href: hashOf({ ...state, sig: "" }) },
      "\u2190 all signatures");
    if (!sig) return h("section", { id: "signature", data: { sig: state.sig } }, back,
      h("p", { class: "empty" }, "No signature " + state.sig + " in this dataset."));
    const cores = shown.filter((f) => f.signature === sig.id)
      .sort((a, b) => byText(b.made || "", a.made || "") || byText(a.core, b.core));
    const hosts = counted(cores, "host");
    const pythons = counted(cores, "python", data.python_versions);
    return h("section", { id: "signature", data: { sig: sig.id } }, back,
      h("div", { class: "panel sig-title" },
        sig.new ? h("span", { class: "badge" }, "NEW") : null,
        h("h2", { class: "sig-text" }, sig.text),
        h("a", { class: "sig-id", id: "permalink", href: hashOf({ sig: sig.id }),
          title: "link to this signature" }, sig.id),
        facts([["cores", "Cores", cores.length],
          ["hosts", "Hosts", distinctKnown(cores, "host").length],
          ["pythons", "Python versions", distinctKnown(cores, "python").length],
          ["first-seen", "First seen", sig.first_seen],
          ["last-seen", "Last seen", sig.last_seen]]),
        cores.length ? null : h("p", { class: "empty" },
          "No core of this signature matches the filters.")),
      h("div", { class: "splits" },
        h("div", { class: "panel" }, h("h2", null, "Hosts"),
          countTable("sig-hosts", "Host", hosts, CORES)),
        h("div", { class: "panel" }, h("h2", null, "Python versions"),
          countTable("sig-pythons", "Python version", pythons, CORES)),
        timeline(sig, cores)),
      stackPanel(sig),
      coresTable(cores));
  };

  // -- drawing ---------------------------------------------------------------------------

  let drawnSig = null;
  const render = () => {
    const state = readState();
    const shown = files.filter((f) => matches(f, state));
    app.replaceChildren(header(), filterBar(state, shown),
      state.sig ? signaturePage(state, shown) : overview(state, shown));
    if (state.sig !== drawnSig) window.scrollTo(0, 0);
    drawnSig = state.sig;
    document.body.dataset.view = state.sig ? "signature" : "overview";
    document.body.dataset.rendered = "true";
  };
  window.addEventListener("hashchange", render);
  render();
})();
