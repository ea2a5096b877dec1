// docbits search page: plain JavaScript, no build step, talks only to this service's API.
// Everything shown is built with DOM nodes and textContent (never innerHTML), so document
// text and metadata, which are user data, are always shown as text.
// The page's state (query, options, open document or bucket) lives in the address bar's
// query string, so any view is a link; the API key lives in one variable and nowhere else.
"use strict";

(() => {
  const SEARCH_FIELDS = ["q", "radius", "nearest", "limit", "offset", "filter"];
  const SIMILAR_LIMIT = 6;
  const BUCKET_LIMIT = 50;
  const ACTIVE_JOB = new Set(["queued", "training", "switching"]);

  let apiKey = null; // memory only: never written to the URL, storage or cookies
  let waitingForKey = []; // what a 401 stopped, to run again once a key is given
  let lastSearch = ""; // the search params last run, to skip repeating it
  let jobTimer = null;
  let infoTimer = null;

  const $ = (id) => document.getElementById(id);

  // el("a", {href: "…", class: "x"}, "text", child): strings become text nodes.
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---- the API -------------------------------------------------------------------------

  class ApiProblem extends Error {
    constructor(status, error) {
      super(error.message);
      this.status = status;
      this.code = error.code;
      this.details = error.details || {};
    }
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (apiKey) headers.Authorization = "Bearer " + apiKey;
    const options = { headers, cache: "no-store" };
    if (body !== undefined) {
      options.method = "POST";
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (failure) {
      throw new ApiProblem(0, { code: "network_error", message: "the service did not answer (" + failure.message + ")" });
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      const error = payload && payload.error ? payload.error : { code: "http_" + response.status, message: response.statusText };
      throw new ApiProblem(response.status, error);
    }
    return payload;
  }

  const documentPath = (id) => "/v1/documents/" + encodeURIComponent(id);

  // ---- the address bar -----------------------------------------------------------------

  function currentParams() {
    return new URLSearchParams(window.location.search);
  }

  function searchKey(params) {
    const kept = new URLSearchParams();
    for (const name of SEARCH_FIELDS) if (params.has(name)) kept.set(name, params.get(name));
    return kept.toString();
  }

  // A link to this page with the current search and `changes` (null removes a parameter).
  function pageHref(changes) {
    const params = currentParams();
    for (const [name, value] of Object.entries(changes)) {
      if (value === null) params.delete(name);
      else params.set(name, value);
    }
    const query = params.toString();
    return query ? "?" + query : window.location.pathname;
  }

  function navigate(href) {
    window.history.pushState(null, "", href);
    show();
  }

  // Links inside the page navigate without a reload (modified clicks still open new tabs).
  function inPageLink(href, label, attributes) {
    return el("a", {
      ...attributes,
      href,
      onclick: (event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(href);
      },
    }, label);
  }

  // ---- errors and the key form ---------------------------------------------------------

  function describe(problem) {
    return problem.code ? problem.code + ": " + problem.message : problem.message;
  }

  function showError(problem) {
    const box = $("error");
    box.replaceChildren(el("strong", {}, "Error "), describe(problem));
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  function askForKey(reason) {
    $("key-reason").textContent = reason;
    if (!$("key-form").hidden) return;
    $("key-form").hidden = false;
    $("key-button").setAttribute("aria-expanded", "true");
    $("key-input").focus();
  }

  // Runs `action`; a 401 opens the key form and runs it again once a key is given.
  // Resolves to true when the action ran to its end.
  async function guarded(action) {
    try {
      await action();
      return true;
    } catch (problem) {
      if (problem instanceof ApiProblem && problem.status === 401) {
        askForKey(apiKey
          ? "The service refused this key (" + problem.message + "). Paste another one."
          : "This deployment needs an API key to read. Paste it to continue.");
        waitingForKey.push(action);
        return false;
      }
      throw problem;
    }
  }

  function setUpKeyForm() {
    $("key-button").addEventListener("click", () => {
      const form = $("key-form");
      form.hidden = !form.hidden;
      $("key-button").setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) $("key-input").focus();
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const typed = $("key-input").value.trim();
      $("key-input").value = "";
      apiKey = typed || null;
      $("key-button").textContent = apiKey ? "API key (set)" : "API key";
      $("key-form").hidden = true;
      $("key-button").setAttribute("aria-expanded", "false");
      const stopped = waitingForKey;
      waitingForKey = [];
      for (const action of stopped) guarded(action).catch(showError);
      if (!stopped.length) loadModel();
    });
    $("key-forget").addEventListener("click", () => {
      apiKey = null;
      $("key-input").value = "";
      $("key-button").textContent = "API key";
    });
  }

  // ---- search --------------------------------------------------------------------------

  // "topic=space, group=a|b" or a JSON object; null when empty.
  function parseFilter(text) {
    const trimmed = text.trim();
    if (!trimmed) return null;
    if (trimmed.startsWith("{")) {
      let parsed;
      try {
        parsed = JSON.parse(trimmed);
      } catch (failure) {
        throw new ApiProblem(0, { code: "bad_filter", message: "the filter is not valid JSON: " + failure.message });
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new ApiProblem(0, { code: "bad_filter", message: "a JSON filter must be an object" });
      }
      return parsed;
    }
    const filter = {};
    for (const pair of trimmed.split(",")) {
      const [key, ...rest] = pair.split("=");
      if (!key.trim() || rest.length === 0) {
        throw new ApiProblem(0, { code: "bad_filter", message: "write the filter as key=value pairs separated by commas, not " + JSON.stringify(pair.trim()) });
      }
      const values = rest.join("=").split("|").map((value) => value.trim());
      filter[key.trim()] = values.length === 1 ? values[0] : values;
    }
    return filter;
  }

  function fillForm(params) {
    $("q").value = params.get("q") || "";
    $("radius").value = params.get("radius") || "0";
    $("nearest").checked = params.get("nearest") === "true";
    $("limit").value = params.get("limit") || "10";
    $("filter").value = params.get("filter") || "";
  }

  function formParams() {
    const params = new URLSearchParams();
    params.set("q", $("q").value);
    if ($("radius").value && $("radius").value !== "0") params.set("radius", $("radius").value);
    if ($("nearest").checked) params.set("nearest", "true");
    if ($("limit").value && $("limit").value !== "10") params.set("limit", $("limit").value);
    if ($("filter").value.trim()) params.set("filter", $("filter").value.trim());
    return params;
  }

  function number(params, name, fallback) {
    const value = params.get(name);
    return value === null || value === "" ? fallback : Number(value);
  }

  function metadataList(metadata) {
    const entries = Object.entries(metadata || {});
    if (!entries.length) return null;
    return el("dl", { class: "meta" }, entries.map(([key, value]) =>
      el("div", {}, el("dt", {}, key), el("dd", {}, typeof value === "string" ? value : JSON.stringify(value)))));
  }

  function scores(hit) {
    const shown = [
      el("span", { class: "distance", title: "Hamming distance in bits" }, "distance " + hit.distance),
      el("span", { class: "score", title: "1 - distance / bits" }, "score " + hit.score.toFixed(3)),
    ];
    if (hit.form_score !== null && hit.form_score !== undefined) {
      shown.push(el("span", { class: "score rescored", title: "cosine of the rescoring forms: the order of nearest hits" },
        "rescored " + hit.form_score.toFixed(3)));
    }
    return shown;
  }

  function hitItem(hit, position) {
    return el("li", { class: "hit" },
      el("div", { class: "hit-head" },
        inPageLink(pageHref({ doc: hit.id, bucket: null }), hit.id, { class: "hit-link", "data-position": position }),
        ...scores(hit)),
      el("p", { class: "snippet" }, hit.snippet === null ? hit.text : hit.snippet),
      metadataList(hit.metadata));
  }

  async function runSearch(params) {
    const q = params.get("q") || "";
    const offset = number(params, "offset", 0);
    const limit = number(params, "limit", 10);
    const body = {
      q,
      radius: number(params, "radius", 0),
      limit,
      offset,
      nearest: params.get("nearest") === "true",
    };
    const filter = parseFilter(params.get("filter") || "");
    if (filter) body.filter = filter;
    $("status").textContent = "Searching…";
    const result = await api("/v1/search", body);
    const shown = result.hits.length;
    $("status").textContent = shown
      ? "Showing " + (offset + 1) + "–" + (offset + shown) + " of " + result.candidates + " candidates."
      : result.candidates + " candidates.";
    const pages = [];
    if (offset > 0) pages.push(inPageLink(pageHref({ offset: Math.max(0, offset - limit) || null, doc: null, bucket: null }), "← Previous", { class: "page-link" }));
    if (offset + shown < result.candidates) pages.push(inPageLink(pageHref({ offset: offset + limit, doc: null, bucket: null }), "Next →", { class: "page-link" }));
    $("results").replaceChildren(...[
      el("p", { class: "summary" },
        "Query code ", inPageLink(pageHref({ bucket: result.query_code, doc: null }), result.query_code, { class: "code query-code", title: "open this bucket" })),
      shown
        ? el("ol", { class: "hits", start: offset + 1 }, result.hits.map((hit, index) => hitItem(hit, offset + index)))
        : el("p", { class: "empty" }, "No documents in this bucket or ball. Widen the radius, or tick \"nearest codes\"."),
      pages.length ? el("nav", { class: "pages", "aria-label": "Result pages" }, pages) : null,
    ].filter(Boolean));
  }

  // ---- document and bucket -------------------------------------------------------------

  function closeButton() {
    return el("button", { type: "button", class: "close", "aria-label": "Close (Escape)", onclick: closeDetail }, "×");
  }

  function openPanel(...children) {
    const panel = $("detail");
    panel.replaceChildren(...children);
    panel.hidden = false;
    panel.focus({ preventScroll: false });
  }

  function closeDetail() {
    if ($("detail").hidden) return;
    navigate(pageHref({ doc: null, bucket: null }));
  }

  async function showDocument(id) {
    const doc = await api(documentPath(id));
    const similar = el("section", { class: "similar", "aria-label": "Similar documents" },
      el("h3", {}, "Similar documents"), el("p", { class: "muted" }, "Loading…"));
    openPanel(
      el("header", { class: "panel-head" }, el("h2", { class: "doc-id" }, doc.id), closeButton()),
      el("p", { class: "doc-code" },
        "Code ", doc.code
          ? inPageLink(pageHref({ bucket: doc.code, doc: null }), doc.code, { class: "code bucket-link", title: "open this bucket" })
          : el("span", { class: "muted" }, "none yet (no model)")),
      metadataList(doc.metadata),
      el("pre", { class: "text" }, doc.text),
      similar);
    if (!doc.code) {
      similar.lastChild.textContent = "Similar documents need a model.";
      return;
    }
    try {
      const found = await api(documentPath(id) + "/similar?nearest=true&limit=" + SIMILAR_LIMIT);
      similar.replaceChildren(el("h3", {}, "Similar documents"),
        found.hits.length
          ? el("ol", { class: "hits compact" }, found.hits.map((hit) =>
            el("li", { class: "hit" },
              el("div", { class: "hit-head" },
                inPageLink(pageHref({ doc: hit.id, bucket: null }), hit.id, { class: "similar-link" }),
                ...scores(hit)),
              el("p", { class: "snippet" }, hit.snippet))))
          : el("p", { class: "muted" }, "No other documents."));
    } catch (problem) {
      similar.replaceChildren(el("h3", {}, "Similar documents"), el("p", { class: "error" }, describe(problem)));
    }
  }

  async function showBucket(code) {
    const bucket = await api("/v1/buckets/" + encodeURIComponent(code) + "?limit=" + BUCKET_LIMIT);
    openPanel(
      el("header", { class: "panel-head" },
        el("h2", {}, "Bucket ", el("span", { class: "code" }, bucket.code)), closeButton()),
      el("p", { class: "bucket-size" }, bucket.size === 1 ? "1 document has this code." : bucket.size + " documents have this code."
        + (bucket.size > bucket.documents.length ? " The first " + bucket.documents.length + " are listed." : "")),
      el("ol", { class: "hits compact" }, bucket.documents.map((member) =>
        el("li", { class: "hit" },
          inPageLink(pageHref({ doc: member.id, bucket: null }), member.id, { class: "member-link" }),
          el("p", { class: "snippet" }, member.snippet),
          metadataList(member.metadata)))));
  }

  // ---- the model panel -----------------------------------------------------------------

  // Bucket sizes in powers-of-two bins: 1, 2, 3–4, 5–8, …
  function histogramBins(histogram) {
    const bins = new Map();
    for (const [size, count] of Object.entries(histogram)) {
      const n = Number(size);
      const upper = n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n));
      bins.set(upper, (bins.get(upper) || 0) + count);
    }
    return [...bins.entries()].sort((a, b) => a[0] - b[0]).map(([upper, count]) => {
      const lower = upper <= 2 ? upper : upper / 2 + 1;
      return { label: lower === upper ? String(upper) : lower + "–" + upper, count };
    });
  }

  function histogramView(histogram) {
    const bins = histogramBins(histogram);
    if (!bins.length) return el("p", { class: "muted" }, "No buckets yet.");
    const most = Math.max(...bins.map((bin) => bin.count));
    return el("table", { class: "histogram" },
      el("caption", {}, "Buckets by size (documents per code); bars on a log scale"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "size"), el("th", { scope: "col" }, "buckets"), el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "bar")))),
      el("tbody", {}, bins.map((bin) => {
        const bar = el("span", { class: "bar" });
        bar.style.width = (100 * Math.log1p(bin.count) / Math.log1p(most)).toFixed(1) + "%";
        return el("tr", {}, el("th", { scope: "row" }, bin.label), el("td", {}, bin.count.toLocaleString("en")), el("td", { class: "bar-cell" }, bar));
      })));
  }

  function jobView(job) {
    const progress = job.progress || {};
    const documents = typeof job.documents === "number" ? " on " + job.documents.toLocaleString("en") + " documents" : "";
    const parts = [el("p", { class: "job-status" }, "Job ", el("code", {}, job.id), ": ", el("strong", {}, job.status), documents)];
    if (progress.epochs) {
      const meter = el("progress", { max: progress.epochs, value: progress.epoch || 0, "aria-label": "training progress" });
      const facts = ["epoch " + (progress.epoch || 0) + " of " + progress.epochs];
      if (typeof progress.loss === "number") facts.push("loss " + progress.loss.toFixed(1));
      if (typeof progress.val_metric === "number") facts.push("P@100 " + progress.val_metric.toFixed(3));
      if (ACTIVE_JOB.has(job.status) && typeof progress.eta_s === "number") facts.push("about " + Math.round(progress.eta_s) + " s left");
      parts.push(meter, el("p", { class: "job-progress" }, facts.join(" · ")));
    }
    if (job.error) parts.push(el("p", { class: "error" }, job.error));
    return el("div", { class: "job" }, parts);
  }

  function fact(name, value) {
    return el("div", {}, el("dt", {}, name), el("dd", {}, value));
  }

  function renderModel(info) {
    const job = info.training_job;
    const facts = info.model_fingerprint
      ? [
        fact("active model", el("code", { title: info.model_fingerprint }, info.model_fingerprint.slice(0, 12))),
        fact("variant", info.variant),
        fact("bits", String(info.bits)),
      ]
      : [fact("active model", "none yet: search needs one")];
    facts.push(fact("documents", info.documents.toLocaleString("en")), fact("buckets", info.buckets.toLocaleString("en")));
    $("model-body").replaceChildren(
      el("dl", { class: "facts" }, facts),
      el("h3", {}, "Bucket sizes"),
      histogramView(info.bucket_size_histogram),
      el("h3", {}, "Training"),
      job ? el("div", { id: "job" }, jobView(job)) : el("p", { class: "muted" }, "No training job since the service started."));
    if (job && ACTIVE_JOB.has(job.status)) followJob(job.id);
  }

  // Loads the panel, then again every 15 s while that works (to notice jobs started elsewhere).
  async function loadModel() {
    window.clearTimeout(infoTimer);
    const refresh = async () => {
      renderModel(await api("/v1/info"));
      infoTimer = window.setTimeout(loadModel, 15000);
    };
    try {
      if (!(await guarded(refresh))) {
        $("model-body").replaceChildren(el("p", { class: "muted" }, "Needs an API key."));
      }
    } catch (problem) {
      $("model-body").replaceChildren(el("p", { class: "error" }, describe(problem)));
    }
  }

  // Polls a running job every second and shows each change; reloads the panel when it ends.
  function followJob(id) {
    window.clearTimeout(jobTimer);
    jobTimer = window.setTimeout(async () => {
      let job;
      try {
        job = await api("/v1/model/jobs/" + encodeURIComponent(id));
      } catch (problem) {
        return;
      }
      const box = $("job");
      if (box) box.replaceChildren(jobView(job));
      if (ACTIVE_JOB.has(job.status)) followJob(id);
      else loadModel();
    }, 1000);
  }

  // ---- putting it together ---------------------------------------------------------------

  // Shows what the address bar says: runs its search (when it changed), opens its document or
  // bucket, or closes the panel.
  async function show() {
    const params = currentParams();
    fillForm(params);
    clearError();
    const key = searchKey(params);
    const tasks = [];
    if (params.get("q") && key !== lastSearch) {
      tasks.push(guarded(async () => { await runSearch(params); lastSearch = key; }));
    } else if (!params.get("q")) {
      lastSearch = "";
      $("results").replaceChildren();
      $("status").textContent = "";
    }
    if (params.get("doc")) tasks.push(guarded(() => showDocument(params.get("doc"))));
    else if (params.get("bucket")) tasks.push(guarded(() => showBucket(params.get("bucket"))));
    else $("detail").hidden = true;
    for (const outcome of await Promise.allSettled(tasks)) {
      if (outcome.status === "rejected") {
        $("status").textContent = "";
        showError(outcome.reason);
      }
    }
  }

  function setUpSearchForm() {
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      lastSearch = ""; // the same search again runs again
      navigate("?" + formParams().toString());
    });
    document.addEventListener("keydown", (event) => {
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (event.key === "/" && !typing) {
        event.preventDefault();
        $("q").focus();
        $("q").select();
      } else if (event.key === "Escape" && !$("detail").hidden) {
        event.preventDefault();
        closeDetail();
        $("q").focus();
      }
    });
    window.addEventListener("popstate", show);
  }

  setUpKeyForm();
  setUpSearchForm();
  loadModel();
  show();
  if (!currentParams().get("q")) $("q").focus();
})();
