/* World Models, the book: V's decoder and M running in the reader's browser (onnxruntime-web).
 *
 * The same code runs in the built book (loaded from _static/wm/wm_widgets.js) and in Jupyter or Colab (inlined
 * in a cell's output by wmlib.book.browser, its files served by the kernel). Every binary file (the runtime's
 * WebAssembly, the models) arrives as a classic script that calls WM_ASSET(name, base64): classic scripts load
 * from a web server, a Colab proxy and a page opened from disk alike, where fetch() and import() of files do not.
 * Nothing is downloaded before the reader first touches a widget.
 *
 * Widgets: WM.mount(id, config) with config.kind "latent" (move one dimension of z, see V decode it) or "dream"
 * (M dreams, V draws; tau slider; p(done); C drives until the reader presses a key). Sampling follows
 * wmlib.mdnrnn.sample_next_z: k ~ softmax(logpi / tau), z = mu_k + exp(logsigma_k) * sqrt(tau) * eps.
 */
(function () {
  "use strict";
  if (window.WM) return;
  const here = document.currentScript && document.currentScript.src;
  const WM = (window.WM = { bookBase: here ? here.replace(/[^/]*$/, "") : null, widgets: {} });
  const style = document.createElement("style");
  style.textContent = `
.wm-widget { border: 1px solid #c8ccd0; border-radius: 6px; padding: 10px; margin: 8px 0; outline: none; }
.wm-widget:focus { border-color: #2a76d2; }
.wm-row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.wm-canvas { width: 256px; height: 256px; image-rendering: pixelated; background: #222; flex: none; }
.wm-widget figure { margin: 0; text-align: center; font-size: 13px; color: #555; }
.wm-controls > button { align-self: flex-start; }
.wm-controls { display: flex; flex-direction: column; gap: 8px; min-width: 240px; flex: 1; font-size: 15px; }
.wm-slider { display: flex; align-items: center; gap: 8px; }
.wm-slider input { flex: 1; }
.wm-buttons { display: flex; flex-wrap: wrap; gap: 6px; }
.wm-widget button { padding: 4px 10px; border: 1px solid #888; border-radius: 4px; background: #f4f4f4; color: #111; cursor: pointer; }
.wm-widget button:disabled { opacity: 0.5; cursor: default; }
.wm-bar { display: flex; align-items: center; gap: 8px; }
.wm-bar-track { display: inline-block; width: 140px; height: 10px; background: #ddd; border-radius: 5px; overflow: hidden; }
.wm-bar-fill { height: 100%; width: 0; background: #d2452a; }
.wm-status { color: #555; font-size: 13px; }`;
  document.head.appendChild(style);

  // ---- assets: classic scripts calling WM_ASSET(name, base64) --------------------------------------------
  const waiting = {};
  const loaded = {};
  window.WM_ASSET = function (name, b64) {
    if (waiting[name]) waiting[name].resolve(b64);
  };
  async function decode64(b64) {
    try {
      const r = await fetch("data:application/octet-stream;base64," + b64);
      return new Uint8Array(await r.arrayBuffer());
    } catch (e) {
      const s = atob(b64), out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
      return out;
    }
  }
  function loadScript(url) {
    return new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = url;
      tag.async = true;
      tag.onload = () => resolve();
      tag.onerror = () => reject(new Error("could not load " + url + (WM.bookBase ? "" :
        " (the kernel serves it: is it running? Its log says why a file is missing; `book/build.sh --fetch-only`" +
        " fetches onnxruntime-web)")));
      document.head.appendChild(tag);
    });
  }
  function asset(base, name) {
    const key = base + name;
    if (!loaded[key]) {
      loaded[key] = new Promise((resolve, reject) => {
        waiting[name] = { resolve: (b64) => decode64(b64).then(resolve, reject) };
        loadScript(base + name + ".js").catch(reject);
      });
    }
    return loaded[key];
  }

  // ---- onnxruntime-web and the models ----------------------------------------------------------------------
  let runtime = null;
  function loadRuntime(base) {
    if (!runtime) {
      runtime = (async () => {
        if (!window.ort) await loadScript(base + "ort/ort.wasm.min.js");
        const [glue, wasm] = await Promise.all([
          asset(base, "ort/ort-wasm-simd-threaded.mjs"), asset(base, "ort/ort-wasm-simd-threaded.wasm")]);
        const ort = window.ort;
        ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page, which a book is not
        ort.env.wasm.proxy = false;
        ort.env.wasm.wasmBinary = wasm;
        ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([glue], { type: "text/javascript" })) };
        return ort;
      })();
      runtime.catch(() => { runtime = null; });
    }
    return runtime;
  }
  const sessions = {};
  function session(base, name) {
    const key = base + name;
    if (!sessions[key]) {
      sessions[key] = (async () => {
        const ort = await loadRuntime(base);
        const bytes = await asset(base, name);
        return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      })();
      sessions[key].catch(() => { delete sessions[key]; });
    }
    return sessions[key];
  }

  async function assetBase(cfg) {
    if (WM.bookBase) return WM.bookBase;
    if (cfg.port) {
      const colab = window.google && google.colab && google.colab.kernel;
      if (colab && colab.proxyPort) {
        const url = await colab.proxyPort(cfg.port, { cache: true });
        return url.endsWith("/") ? url : url + "/";
      }
      return "http://127.0.0.1:" + cfg.port + "/";
    }
    throw new Error("no place to load the models from: run the cell in Jupyter or Colab, or read the built book");
  }

  // ---- small helpers ------------------------------------------------------------------------------------------
  function rng(seed) { // mulberry32, then Box-Muller for normals
    let a = seed >>> 0;
    const uniform = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    let spare = null;
    const normal = () => {
      if (spare !== null) { const s = spare; spare = null; return s; }
      let u = 0;
      while (u === 0) u = uniform();
      const r = Math.sqrt(-2 * Math.log(u)), th = 2 * Math.PI * uniform();
      spare = r * Math.sin(th);
      return r * Math.cos(th);
    };
    return { uniform, normal };
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }
  function drawFrame(canvas, frames) { // frames: Float32Array (64 * 64 * 3) in [0, 1], channels last
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(64, 64);
    for (let i = 0, j = 0; i < 64 * 64; i++, j += 3) {
      img.data[4 * i] = Math.round(Math.min(1, Math.max(0, frames[j])) * 255);
      img.data[4 * i + 1] = Math.round(Math.min(1, Math.max(0, frames[j + 1])) * 255);
      img.data[4 * i + 2] = Math.round(Math.min(1, Math.max(0, frames[j + 2])) * 255);
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function preview(canvas, png) {
    if (!png) return;
    const im = new Image();
    im.onload = () => canvas.getContext("2d").drawImage(im, 0, 0, 64, 64);
    im.src = png;
  }
  function mb(bytes) { return (bytes / 1e6).toFixed(1) + " MB"; }

  // ---- the latent explorer -------------------------------------------------------------------------------
  function latent(root, cfg) {
    const canvas = el("canvas", { width: 64, height: 64, class: "wm-canvas" });
    const real = el("img", { class: "wm-canvas", alt: "the real frame" });
    const sample = el("select", { "aria-label": "frame" });
    cfg.samples.forEach((s, i) => sample.append(el("option", { value: i }, s.name)));
    const dim = el("select", { "aria-label": "dimension of z" });
    cfg.dims.forEach((d) => dim.append(el("option", { value: d.index }, d.label)));
    const slider = el("input", { type: "range", min: -cfg.range, max: cfg.range, step: 0.01, value: 0,
                                 "aria-label": "value of the dimension" });
    const shown = el("output", {}, "0.00");
    const status = el("div", { class: "wm-status" },
      `Runs in your browser: V's decoder (${mb(cfg.bytes)} with its runtime) loads when you first touch it.`);
    let z = cfg.samples[0].z.slice();
    let busy = false, again = false, decoder = null, renders = 0;
    const setSlider = () => {
      const v = z[+dim.value];
      slider.value = v.toFixed(2);
      shown.textContent = (+v).toFixed(2);
    };
    async function start() {
      if (decoder) return decoder;
      status.textContent = "loading V's decoder...";
      const t = performance.now();
      try {
        decoder = await assetBase(cfg).then((base) => session(base, cfg.decoder));
      } catch (e) {
        status.textContent = "could not load the model: " + e.message;
        root.dataset.error = e.message;
        throw e;
      }
      root.dataset.loadMs = Math.round(performance.now() - t);
      status.textContent = `V's decoder is running in your browser (loaded in ${root.dataset.loadMs} ms).`;
      root.dataset.ready = "1";
      return decoder;
    }
    async function render() {
      if (busy) { again = true; return; }
      busy = true;
      try {
        do {
          again = false;
          const d = await start();
          const t = performance.now();
          const out = await d.run({ z: new window.ort.Tensor("float32", Float32Array.from(z), [1, z.length]) });
          drawFrame(canvas, out.frames.data);
          renders += 1;
          root.dataset.renders = renders;
          root.dataset.renderMs = (performance.now() - t).toFixed(1);
          root.dataset.shown = JSON.stringify(z.map((v) => +v.toFixed(3)));
        } while (again);
      } finally {
        busy = false;
      }
    }
    slider.addEventListener("input", () => {
      z[+dim.value] = +slider.value;
      shown.textContent = (+slider.value).toFixed(2);
      render().catch(() => {});
    });
    dim.addEventListener("change", setSlider);
    sample.addEventListener("change", () => {
      z = cfg.samples[+sample.value].z.slice();
      setSlider();
      render().catch(() => {});
    });
    const reset = el("button", { type: "button", onclick: () => {
      z = cfg.samples[+sample.value].z.slice();
      setSlider();
      render().catch(() => {});
    } }, "reset");
    const warm = () => start().catch(() => {});
    root.addEventListener("pointerenter", warm, { once: true });
    root.addEventListener("focusin", warm, { once: true });
    root.append(el("div", { class: "wm-row" },
      el("figure", {}, real, el("figcaption", {}, "the real frame")),
      el("figure", {}, canvas, el("figcaption", {}, "V's drawing of the changed code")),
      el("div", { class: "wm-controls" },
      el("label", {}, "frame ", sample), el("label", {}, "dimension ", dim),
      el("div", { class: "wm-slider" }, slider, shown), reset, status)));
    preview(canvas, cfg.samples[0].png);
    real.src = cfg.samples[0].real;
    sample.addEventListener("change", () => { real.src = cfg.samples[+sample.value].real; });
    setSlider();
    return { render, start };
  }

  // ---- the dream -----------------------------------------------------------------------------------------
  function softmaxPick(logits, tau, u) {
    let max = -Infinity;
    for (const l of logits) max = Math.max(max, l / tau);
    let total = 0;
    const p = logits.map((l) => { const e = Math.exp(l / tau - max); total += e; return e; });
    let acc = 0;
    for (let k = 0; k < p.length; k++) { acc += p[k] / total; if (u < acc) return k; }
    return p.length - 1;
  }

  function dream(root, cfg) {
    const Z = cfg.zSize, H = cfg.hidden, K = cfg.mixtures, A = cfg.actionSize;
    const canvas = el("canvas", { width: 64, height: 64, class: "wm-canvas" });
    const go = el("button", { type: "button", class: "wm-go" }, "start the dream");
    const again = el("button", { type: "button" }, "new episode");
    const tau = el("input", { type: "range", min: 0.1, max: 2, step: 0.05, value: cfg.tau, "aria-label": "temperature tau" });
    const tauShown = el("output", {}, (+cfg.tau).toFixed(2));
    const pBar = el("div", { class: "wm-bar-fill" });
    const pShown = el("output", {}, "-");
    const steps = el("output", {}, "0");
    const fps = el("output", {}, "-");
    const driver = el("div", { class: "wm-driver" }, "C drives. Press \u2190 \u2192 (or hold the buttons) to take over.");
    const giveBack = el("button", { type: "button", disabled: "" }, "let C drive");
    const status = el("div", { class: "wm-status" },
      `Runs in your browser: M and V (${mb(cfg.bytes)} with their runtime) load when you start the dream.`);
    const keys = cfg.env === "doom"
      ? [["ArrowLeft", "\u2190 left"], ["ArrowRight", "right \u2192"]]
      : [["ArrowLeft", "\u2190 steer"], ["ArrowUp", "\u2191 gas"], ["ArrowDown", "\u2193 brake"], ["ArrowRight", "steer \u2192"]];
    const held = new Set();
    let human = false;
    const press = (k, down) => {
      if (down) { held.add(k); human = true; giveBack.disabled = false; driver.textContent = "You drive (" + k.replace("Arrow", "").toLowerCase() + ")."; }
      else held.delete(k);
      root.dataset.driver = human ? "you" : "C";
    };
    const pads = keys.map(([k, label]) => {
      const b = el("button", { type: "button", class: "wm-key" }, label);
      b.addEventListener("pointerdown", (e) => { e.preventDefault(); press(k, true); });
      for (const ev of ["pointerup", "pointerleave", "pointercancel"]) b.addEventListener(ev, () => press(k, false));
      return b;
    });
    root.setAttribute("tabindex", "0");
    root.addEventListener("keydown", (e) => {
      if (!keys.some(([k]) => k === e.key)) return;
      e.preventDefault(); // the arrows steer instead of scrolling while the widget has the focus
      press(e.key, true);
      if (!running) toggle();
    });
    root.addEventListener("keyup", (e) => press(e.key, false));
    giveBack.addEventListener("click", () => {
      human = false; held.clear(); giveBack.disabled = true; root.dataset.driver = "C";
      driver.textContent = "C drives. Press \u2190 \u2192 (or hold the buttons) to take over.";
    });
    tau.addEventListener("input", () => { tauShown.textContent = (+tau.value).toFixed(2); root.dataset.tau = tau.value; });

    const random = rng(cfg.seed >>> 0);
    let models = null, state = null, running = false, frames = 0, lastFrames = [], busy = false;
    const action = new Float32Array(A);

    function controllerAction() {
      const w = cfg.controller, x = [];
      x.push(...state.z);
      if (w.reads === "zch") x.push(...state.c);
      if (w.reads !== "z") x.push(...state.h);
      for (let i = 0; i < A; i++) {
        let s = w.b ? w.b[i] : 0;
        const row = w.W[i];
        for (let j = 0; j < x.length; j++) s += row[j] * x[j];
        action[i] = Math.tanh(s);
      }
    }
    function humanAction() {
      action.fill(0);
      if (cfg.env === "doom") {
        action[0] = (held.has("ArrowRight") ? 1 : 0) - (held.has("ArrowLeft") ? 1 : 0);
      } else {
        action[0] = (held.has("ArrowRight") ? 1 : 0) - (held.has("ArrowLeft") ? 1 : 0);
        action[1] = held.has("ArrowUp") ? 1 : -1; // gas = (a + 1) / 2, as wmlib.envs.carracing_action
        action[2] = held.has("ArrowDown") ? 1 : 0;
      }
    }
    function newEpisode() {
      const i = Math.floor(random.uniform() * cfg.initial.mu.length);
      const init = cfg.initial, mu = init.mu[i], lv = init.logvar && init.logvar[i];
      state = { z: lv ? mu.map((m, d) => m + Math.exp(0.5 * lv[d]) * random.normal()) : mu.slice(),
                h: init.h ? Float32Array.from(init.h[i]) : new Float32Array(H),
                c: init.c ? Float32Array.from(init.c[i]) : new Float32Array(H), restart: 1, t: 0, over: false };
      steps.textContent = "0";
      pShown.textContent = "-";
      pBar.style.width = "0%";
    }
    async function load() {
      if (models) return models;
      status.textContent = "loading M and V...";
      const t = performance.now();
      const base = await assetBase(cfg);
      const [m, v] = await Promise.all([session(base, cfg.m), session(base, cfg.decoder)]);
      models = { m, v };
      root.dataset.loadMs = Math.round(performance.now() - t);
      status.textContent = `M and V are running in your browser (loaded in ${root.dataset.loadMs} ms).`;
      root.dataset.ready = "1";
      return models;
    }
    async function step() {
      const ort = window.ort;
      if (human) humanAction(); else controllerAction();
      root.dataset.action = JSON.stringify(Array.from(action, (a) => +a.toFixed(3)));
      const feeds = {
        z: new ort.Tensor("float32", Float32Array.from(state.z), [1, Z]),
        action: new ort.Tensor("float32", Float32Array.from(action), [1, A]),
        h: new ort.Tensor("float32", state.h, [1, 1, H]),
        c: new ort.Tensor("float32", state.c, [1, 1, H]),
      };
      if (models.m.inputNames.includes("restart")) feeds.restart = new ort.Tensor("float32", Float32Array.of(state.restart), [1]);
      const out = await models.m.run(feeds);
      const t = +tau.value, logpi = out.logpi.data, mu = out.mu.data, logsigma = out.logsigma.data;
      const z = new Array(Z);
      for (let d = 0; d < Z; d++) {
        const o = d * K;
        const k = softmaxPick(Array.from(logpi.subarray(o, o + K)), t, random.uniform());
        z[d] = mu[o + k] + Math.exp(logsigma[o + k]) * Math.sqrt(t) * random.normal();
      }
      const p = out.p_done.data[0];
      state = { z, h: out.h_next.data.slice(), c: out.c_next.data.slice(), restart: 0, t: state.t + 1, over: false };
      const frame = await models.v.run({ z: new ort.Tensor("float32", Float32Array.from(z), [1, Z]) });
      drawFrame(canvas, frame.frames.data);
      frames += 1;
      root.dataset.frames = frames;
      steps.textContent = state.t;
      root.dataset.steps = state.t;
      if (cfg.doneHead) {
        pShown.textContent = p.toFixed(2);
        pBar.style.width = (100 * p).toFixed(0) + "%";
        root.dataset.pDone = p.toFixed(3);
        if (p > 0.5) state.over = "M says the episode is over (p(done) > 0.5)";
      }
      if (state.t >= cfg.maxSteps) state.over = `the dream's cap of ${cfg.maxSteps} steps`;
      const now = performance.now();
      lastFrames.push(now);
      while (lastFrames.length && now - lastFrames[0] > 1000) lastFrames.shift();
      if (lastFrames.length > 1) {
        const rate = (lastFrames.length - 1) / ((now - lastFrames[0]) / 1000);
        fps.textContent = rate.toFixed(0);
        root.dataset.fps = rate.toFixed(1);
      }
    }
    let chain = 0; // each start begins a new chain of frames; an older one stops at its next frame
    function loop(mine) {
      if (!running || mine !== chain) return;
      if (busy) { requestAnimationFrame(() => loop(mine)); return; }
      busy = true;
      step().then(() => {
        busy = false;
        if (state.over) {
          const said = `Episode over after ${state.t} steps: ${state.over}.`;
          status.textContent = said;
          root.dataset.episodes = (+(root.dataset.episodes || 0) + 1);
          newEpisode();
        }
        requestAnimationFrame(() => loop(mine));
      }, (e) => { busy = false; running = false; go.textContent = "start the dream"; status.textContent = "error: " + e.message; root.dataset.error = e.message; });
    }
    let starting = false;
    async function toggle() {
      if (running) { running = false; go.textContent = "resume"; return; }
      if (starting) return; // a second click or a repeating key while the models load: one loop only
      starting = true;
      try {
        await load();
      } catch (e) {
        status.textContent = "could not load the models: " + e.message;
        root.dataset.error = e.message;
        return;
      } finally {
        starting = false;
      }
      if (!state) newEpisode();
      running = true;
      go.textContent = "pause";
      const mine = ++chain;
      requestAnimationFrame(() => loop(mine));
    }
    go.addEventListener("click", () => { root.focus(); toggle(); });
    again.addEventListener("click", () => newEpisode());
    const warm = () => load().catch(() => {});
    root.addEventListener("pointerenter", warm, { once: true });
    root.addEventListener("focusin", warm, { once: true });
    const rows = [el("div", { class: "wm-buttons" }, go, again),
                  el("label", { class: "wm-slider" }, "tau ", tau, tauShown)];
    if (cfg.doneHead) rows.push(el("div", { class: "wm-bar" }, "p(done) ", el("span", { class: "wm-bar-track" }, pBar), pShown));
    rows.push(el("div", {}, cfg.doneHead ? "survived " : "step ", steps, cfg.doneHead ? " steps" : "", " \u00b7 ", fps, " frames/s"),
              driver, el("div", { class: "wm-buttons" }, ...pads, giveBack), status);
    root.append(el("div", { class: "wm-row" },
      el("figure", {}, canvas, el("figcaption", {}, "V's drawing of M's dream")),
      el("div", { class: "wm-controls" }, ...rows)));
    preview(canvas, cfg.png);
    root.dataset.driver = "C";
    root.dataset.tau = tau.value;
    // for the tests: what C read and did at the last step
    return { toggle, load, state: () => state && { z: Array.from(state.z), h: Array.from(state.h), c: Array.from(state.c) },
             action: () => Array.from(action), controllerAction: (z, h, c) => {
               const saved = state; state = { z, h, c }; controllerAction(); state = saved; return Array.from(action); } };
  }

  WM.mount = function (id, cfg) {
    const root = document.getElementById(id);
    if (!root || root.dataset.mounted) return;
    root.dataset.mounted = "1";
    root.classList.add("wm-widget");
    WM.widgets[id] = (cfg.kind === "latent" ? latent : dream)(root, cfg);
  };
})();
