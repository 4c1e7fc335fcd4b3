// The drawing page: strokes with pointer events (mouse, touch, pen), a live look inside the
// network from the server (POST /explain: the prediction, each hidden layer's activations and
// the saliency map), the first layer's weights (GET /explain/weights, once per model version)
// and the run's curves, pushed by the server as it trains (GET /events). No outside assets.
"use strict";
(function () {
  const DEBOUNCE_MS = 60;
  const LINE_WIDTH = 20;
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const seen = document.getElementById("seen").getContext("2d");
  const saliency = document.getElementById("saliency").getContext("2d");
  const bars = document.getElementById("bars");
  const predictionEl = document.getElementById("prediction");
  const probabilityEl = document.getElementById("probability");
  const versionEl = document.getElementById("version");
  const statusEl = document.getElementById("status");
  const layersEl = document.getElementById("layers");
  const weightsCanvas = document.getElementById("weights");
  const fileInput = document.getElementById("file");
  // version: what is on the pad now; shown: the version whose prediction is displayed.
  // Tests (and curious people) read window.mnist to know when the page has settled.
  const state = (window.mnist = {
    version: 0, shown: 0, busy: false, inked: false, classNames: [],
    modelVersion: null, answeredBy: null, points: 0, weightsVersion: null, explained: null,
  });
  let timer = null;
  let stroke = null;
  let queued = null;
  let weights = null; // {version, kind, shape, levels, tiles per row}
  let mostActive = -1;

  function blank() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    state.inked = false;
  }

  function say(message, kind) {
    statusEl.textContent = message || "";
    statusEl.className = "status" + (message ? " " + (kind || "error") : "");
  }

  function buildBars(names) {
    state.classNames = names;
    bars.textContent = "";
    names.forEach((name, index) => {
      const row = document.createElement("div");
      row.className = "row";
      row.dataset.class = String(index);
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.className = "fill";
      bar.appendChild(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      row.append(label, bar, pct);
      bars.appendChild(row);
    });
  }

  function showBars(probabilities, predicted) {
    Array.from(bars.children).forEach((row, index) => {
      const p = probabilities ? probabilities[index] : 0;
      row.querySelector(".fill").style.width = (p * 100).toFixed(1) + "%";
      row.querySelector(".pct").textContent = probabilities ? (p * 100).toFixed(1) + "%" : "";
      row.classList.toggle("top", probabilities !== null && index === predicted);
    });
  }

  function paint(context, width, height, rgb) {
    const data = context.createImageData(width, height);
    for (let i = 0; i < width * height; i++) {
      const [r, g, b] = rgb(i);
      data.data[4 * i] = r;
      data.data[4 * i + 1] = g;
      data.data[4 * i + 2] = b;
      data.data[4 * i + 3] = 255;
    }
    context.putImageData(data, 0, 0);
  }

  function showSeen(image) {
    paint(seen, 28, 28, (i) => {
      const v = image ? image[Math.floor(i / 28)][i % 28] : 0;
      return [v, v, v];
    });
  }

  // The saliency map over the digit: red where more ink raises the predicted class's score, blue where it lowers it.
  function showSaliency(image, map) {
    let top = 0;
    if (map) map.forEach((row) => row.forEach((v) => (top = Math.max(top, Math.abs(v)))));
    paint(saliency, 28, 28, (i) => {
      const y = Math.floor(i / 28), x = i % 28;
      const grey = image ? image[y][x] * 0.45 : 0;
      const s = map && top > 0 ? map[y][x] / top : 0;
      const heat = Math.min(1, Math.abs(s) * 1.5);
      const colour = s >= 0 ? [255, 60, 40] : [60, 120, 255];
      return colour.map((c) => Math.round(grey * (1 - heat) + c * heat));
    });
  }

  function bytes(base64) {
    const text = atob(base64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }

  // One canvas per layer: dense units as a grid of shaded cells, feature maps as small grey images.
  function layerCanvas(layer, index) {
    let figure = layersEl.children[index];
    if (!figure || figure.dataset.name !== layer.name) {
      figure = document.createElement("figure");
      figure.dataset.name = layer.name;
      const caption = document.createElement("figcaption");
      const canvas = document.createElement("canvas");
      canvas.className = "layer";
      figure.append(caption, canvas);
      if (layersEl.children[index]) layersEl.replaceChild(figure, layersEl.children[index]);
      else layersEl.appendChild(figure);
    }
    return figure;
  }

  function drawLayer(layer, index) {
    const figure = layerCanvas(layer, index);
    const canvas = figure.querySelector("canvas");
    const levels = bytes(layer.pixels);
    const c = canvas.getContext("2d");
    const top = new Set(layer.top);
    if (layer.kind === "dense") {
      const units = layer.shape[0];
      const perRow = Math.min(32, Math.ceil(Math.sqrt(units * 2)));
      const cell = 9;
      const rows = Math.ceil(units / perRow);
      if (canvas.width !== perRow * cell) { canvas.width = perRow * cell; canvas.height = rows * cell; }
      c.fillStyle = "#000";
      c.fillRect(0, 0, canvas.width, canvas.height);
      for (let u = 0; u < units; u++) {
        const v = levels[u];
        c.fillStyle = `rgb(${v},${v},${v})`;
        c.fillRect((u % perRow) * cell, Math.floor(u / perRow) * cell, cell - 1, cell - 1);
      }
      c.strokeStyle = "#1f9d55";
      c.lineWidth = 2;
      top.forEach((u) => c.strokeRect((u % perRow) * cell + 1, Math.floor(u / perRow) * cell + 1, cell - 3, cell - 3));
      figure.querySelector("figcaption").textContent = `${layer.name}: ${units} units, most active ${layer.top.slice(0, 3).join(", ")}`;
    } else {
      const [h, w, maps] = layer.shape;
      const scale = h >= 28 ? 1 : h >= 14 ? 2 : 4;
      const perRow = Math.min(maps, 16);
      const tile = w * scale + 2;
      const rows = Math.ceil(maps / perRow);
      if (canvas.width !== perRow * tile) { canvas.width = perRow * tile; canvas.height = rows * tile; }
      const image = c.createImageData(canvas.width, canvas.height);
      for (let m = 0; m < maps; m++) {
        const ox = (m % perRow) * tile + 1, oy = Math.floor(m / perRow) * tile + 1;
        for (let y = 0; y < h * scale; y++) {
          for (let x = 0; x < w * scale; x++) {
            const v = levels[(Math.floor(y / scale) * w + Math.floor(x / scale)) * maps + m];
            const p = 4 * ((oy + y) * canvas.width + ox + x);
            image.data[p] = image.data[p + 1] = image.data[p + 2] = v;
            image.data[p + 3] = 255;
          }
        }
      }
      c.putImageData(image, 0, 0);
      c.strokeStyle = "#1f9d55";
      top.forEach((m) => c.strokeRect((m % perRow) * tile + 0.5, Math.floor(m / perRow) * tile + 0.5, tile - 1, tile - 1));
      figure.querySelector("figcaption").textContent = `${layer.name}: ${maps} feature maps of ${h}×${w}, most active ${layer.top.slice(0, 3).join(", ")}`;
    }
    canvas.style.width = Math.min(canvas.width * 2, 420) + "px";
  }

  function showLayers(layers) {
    if (!layers) {
      layersEl.querySelectorAll("canvas").forEach((canvas) => canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height));
      return;
    }
    layers.forEach(drawLayer);
    while (layersEl.children.length > layers.length) layersEl.lastChild.remove();
  }

  // The first layer's weights: each tile blue where the weight is positive, red where it is negative.
  function drawWeights() {
    if (!weights) return;
    const [tiles, h, w] = weights.shape;
    const scale = h <= 5 ? 8 : 1;
    const perRow = Math.min(tiles, h <= 5 ? 8 : 16);
    const tile = w * scale + 2;
    const rows = Math.ceil(tiles / perRow);
    if (weightsCanvas.width !== perRow * tile) { weightsCanvas.width = perRow * tile; weightsCanvas.height = rows * tile; }
    const c = weightsCanvas.getContext("2d");
    const image = c.createImageData(weightsCanvas.width, weightsCanvas.height);
    image.data.fill(255);
    for (let t = 0; t < tiles; t++) {
      const ox = (t % perRow) * tile + 1, oy = Math.floor(t / perRow) * tile + 1;
      for (let y = 0; y < h * scale; y++) {
        for (let x = 0; x < w * scale; x++) {
          const s = (weights.levels[(t * h + Math.floor(y / scale)) * w + Math.floor(x / scale)] - 128) / 127;
          const p = 4 * ((oy + y) * weightsCanvas.width + ox + x);
          const a = Math.min(1, Math.abs(s));
          const colour = s >= 0 ? [40, 90, 220] : [220, 50, 40];
          image.data[p] = Math.round(255 * (1 - a) + colour[0] * a);
          image.data[p + 1] = Math.round(255 * (1 - a) + colour[1] * a);
          image.data[p + 2] = Math.round(255 * (1 - a) + colour[2] * a);
        }
      }
    }
    c.putImageData(image, 0, 0);
    if (mostActive >= 0 && mostActive < tiles) {
      c.strokeStyle = "#1f9d55";
      c.lineWidth = 2;
      c.strokeRect((mostActive % perRow) * tile + 1, Math.floor(mostActive / perRow) * tile + 1, tile - 2, tile - 2);
    }
    weightsCanvas.style.width = Math.min(weightsCanvas.width, 460) + "px";
  }

  async function loadWeights(version) {
    try {
      const response = await fetch("/explain/weights" + (version ? "?version=" + version : ""));
      if (!response.ok) return;
      const answer = await response.json();
      weights = { version: answer.version, shape: answer.shape, levels: bytes(answer.pixels), kind: answer.kind };
      state.weightsVersion = answer.version;
      document.getElementById("weights-help").textContent =
        answer.kind === "dense"
          ? `${answer.layer}'s weights, one 28×28 tile per unit (version ${answer.version}): blue for positive, red for negative. The unit that fires most for your drawing is outlined.`
          : `${answer.layer}'s 3×3 filters (version ${answer.version}): blue for positive, red for negative. The filter that fires most for your drawing is outlined.`;
      drawWeights();
    } catch (error) {
      /* the weights are a view; the prediction goes on without them */
    }
  }

  function showNothing(message) {
    predictionEl.textContent = "–";
    predictionEl.dataset.class = "";
    probabilityEl.textContent = "";
    showBars(null, -1);
    showSeen(null);
    showSaliency(null, null);
    showLayers(null);
    mostActive = -1;
    drawWeights();
    state.explained = null;
    say(message, "error");
  }

  function show(item) {
    if (item.error) {
      showNothing(item.error + (item.hint ? " (" + item.hint + ")" : ""));
      return;
    }
    predictionEl.textContent = item.name;
    predictionEl.dataset.class = String(item.prediction);
    probabilityEl.textContent = (item.probability * 100).toFixed(1) + "%";
    showBars(item.probabilities, item.prediction);
    showSeen(item.image);
    showSaliency(item.image, item.saliency);
    showLayers(item.layers);
    mostActive = item.most_active;
    if (weights && weights.version !== item.version) loadWeights(item.version);
    else drawWeights();
    state.answeredBy = item.version;
    state.explained = { layers: item.layers.map((l) => l.name), version: item.version };
    versionEl.textContent = "version " + item.version;
    say(item.path === "request body" ? "" : "read " + item.path, "note");
  }

  // One request at a time; the newest pad (or upload) waiting goes next, older ones are dropped.
  async function send(body, contentType, version) {
    if (state.busy) {
      queued = [body, contentType, version];
      return;
    }
    state.busy = true;
    try {
      // A form (contentType null) carries its own Content-Type with the boundary.
      const headers = contentType ? { "Content-Type": contentType } : {};
      const response = await fetch("/explain?pixels=true", { method: "POST", headers, body });
      const answer = await response.json();
      if (version === state.version) {
        if (Array.isArray(answer)) show(answer[0]);
        else if (answer.results && answer.results[0]) show(answer.results[0]);
        else showNothing((answer.error || "the server answered " + response.status) + (answer.hint ? " (" + answer.hint + ")" : ""));
      }
    } catch (error) {
      if (version === state.version) showNothing("no answer from the server: " + error);
    } finally {
      state.shown = Math.max(state.shown, version);
      state.busy = false;
      if (queued) {
        const next = queued;
        queued = null;
        send(...next);
      }
    }
  }

  function predictPad() {
    const version = state.version;
    if (!state.inked) {
      state.shown = version;
      return;
    }
    pad.toBlob((blob) => send(blob, "image/png", version), "image/png");
  }

  function changed() {
    state.version += 1;
    clearTimeout(timer);
    // While a request is out the drawing waits anyway; the newest one goes when it is back.
    timer = setTimeout(predictPad, DEBOUNCE_MS);
  }

  function clear() {
    clearTimeout(timer);
    blank();
    state.upload = null;
    state.version += 1;
    state.shown = state.version;
    queued = null;
    showNothing("");
  }

  function point(event) {
    const rect = pad.getBoundingClientRect();
    return [((event.clientX - rect.left) * pad.width) / rect.width, ((event.clientY - rect.top) * pad.height) / rect.height];
  }

  function line(from, to) {
    ctx.strokeStyle = "#000";
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    if (state.upload) {
      state.upload = null;
      blank();
    }
    pad.setPointerCapture(event.pointerId);
    stroke = point(event);
    line(stroke, stroke); // a dot
    state.inked = true;
    event.preventDefault();
    changed();
  });
  pad.addEventListener("pointermove", (event) => {
    if (stroke === null) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) {
      const next = point(each);
      line(stroke, next);
      stroke = next;
    }
    changed();
  });
  const end = () => {
    if (stroke !== null) {
      stroke = null;
      changed();
    }
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);

  function upload(file) {
    if (!file) return;
    clearTimeout(timer);
    state.version += 1;
    const version = state.version;
    // The previous drawing goes at once: a picture that cannot be shown leaves the square empty beside its error.
    blank();
    state.upload = file;
    // The picture is shown on the pad, but the server reads the file itself, as `mnist predict` would.
    const url = URL.createObjectURL(file);
    const picture = new Image();
    picture.onload = () => {
      URL.revokeObjectURL(url);
      if (state.upload !== file) return;
      const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
      const w = picture.width * scale;
      const h = picture.height * scale;
      ctx.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    };
    picture.onerror = () => URL.revokeObjectURL(url);
    picture.src = url;
    send(formOf(file), null, version);
  }

  function formOf(file) {
    // Sent as a form, so the answer carries the file's name, as `mnist predict` shows it.
    const form = new FormData();
    form.append("file", file, file.name);
    return form;
  }

  // A new model version re-reads what is on the pad, so a learner sees the answer change as the network trains.
  function repredict() {
    if (state.upload) {
      state.version += 1;
      send(formOf(state.upload), null, state.version);
    } else if (state.inked) {
      state.version += 1;
      predictPad();
    }
  }

  // --- the run's curves -------------------------------------------------------------------

  function chart(id, series, { percent = false, log = false } = {}) {
    const canvas = document.getElementById(id);
    const c = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, left = 46, right = 8, topPad = 16, bottom = 16;
    c.clearRect(0, 0, W, H);
    const values = series.flatMap((s) => s.values.filter((v) => v !== null && isFinite(v) && (!log || v > 0)));
    const n = Math.max(...series.map((s) => s.values.length), 0);
    c.font = "11px system-ui, sans-serif";
    c.fillStyle = "#5c6670";
    let legend = left;
    series.forEach((s) => {
      c.fillStyle = s.colour;
      c.fillText(s.name, legend, 11);
      legend += c.measureText(s.name).width + 14;
    });
    if (!values.length) {
      c.fillStyle = "#5c6670";
      c.fillText("no epoch finished yet", left, H / 2);
      return;
    }
    const f = (v) => (log ? Math.log10(v) : v);
    let lo = Math.min(...values.map(f)), hi = Math.max(...values.map(f));
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const x = (i) => left + (n <= 1 ? (W - left - right) / 2 : (i * (W - left - right)) / (n - 1));
    const y = (v) => topPad + ((hi - f(v)) * (H - topPad - bottom)) / (hi - lo);
    c.strokeStyle = "#d6dbe0";
    c.strokeRect(left, topPad, W - left - right, H - topPad - bottom);
    c.fillStyle = "#5c6670";
    const label = (v) => (percent ? (v * 100).toFixed(1) + "%" : v < 0.01 ? v.toExponential(1) : v.toFixed(3));
    c.fillText(label(log ? 10 ** hi : hi), 2, topPad + 8);
    c.fillText(label(log ? 10 ** lo : lo), 2, H - bottom);
    c.fillText("epoch " + n, W - right - 48, H - 3);
    series.forEach((s) => {
      c.strokeStyle = c.fillStyle = s.colour;
      c.lineWidth = 2;
      c.beginPath();
      let started = false;
      s.values.forEach((v, i) => {
        if (v === null || !isFinite(v) || (log && v <= 0)) return;
        if (started) c.lineTo(x(i), y(v));
        else c.moveTo(x(i), y(v));
        started = true;
      });
      c.stroke();
      s.values.forEach((v, i) => {
        if (v === null || !isFinite(v) || (log && v <= 0)) return;
        c.beginPath();
        c.arc(x(i), y(v), 2.5, 0, 2 * Math.PI);
        c.fill();
      });
    });
  }

  function showRun(view) {
    const history = view.history || [];
    state.points = history.length;
    const pick = (key) => history.map((entry) => (entry[key] === undefined ? null : entry[key]));
    chart("loss-chart", [
      { name: "train loss", colour: "#2f6fdf", values: pick("train_loss") },
      { name: "validation loss", colour: "#e0782f", values: pick("val_loss") },
    ]);
    chart("accuracy-chart", [
      { name: "train accuracy", colour: "#2f6fdf", values: pick("train_accuracy") },
      { name: "validation accuracy", colour: "#e0782f", values: pick("val_accuracy") },
    ], { percent: true });
    chart("lr-chart", [{ name: "learning rate", colour: "#1f9d55", values: pick("lr") }], { log: true });
    const held = (view.versions || []).map((note) => note.version + (note.epoch ? " (epoch " + note.epoch + ")" : ""));
    const note = document.getElementById("run-note");
    note.textContent =
      (view.following ? "following the run as it trains · " : "") +
      (held.length ? "versions loaded: " + held.join(", ") + " · current " + view.current : "") +
      (view.problem ? " · " + view.problem : "");
    if (view.current !== null && view.current !== state.modelVersion) {
      const first = state.modelVersion === null;
      state.modelVersion = view.current;
      loadWeights(view.current);
      if (!first) {
        versionEl.classList.add("fresh");
        setTimeout(() => versionEl.classList.remove("fresh"), 1500);
        repredict();
      }
    }
  }

  function listen() {
    if (!window.EventSource) return;
    const source = new EventSource("/events");
    source.addEventListener("run", (event) => {
      try {
        showRun(JSON.parse(event.data));
      } catch (error) {
        /* a broken event is skipped; the next one carries the whole view again */
      }
    });
  }

  document.getElementById("clear").addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "c" || event.key === "C" || event.key === "Escape") clear();
  });
  fileInput.addEventListener("change", () => {
    upload(fileInput.files[0]);
    fileInput.value = "";
  });
  pad.addEventListener("dragover", (event) => {
    event.preventDefault();
    pad.classList.add("dragging");
  });
  pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
  pad.addEventListener("drop", (event) => {
    event.preventDefault();
    pad.classList.remove("dragging");
    upload(event.dataTransfer.files[0]);
  });

  blank();
  buildBars(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  showNothing("");
  showRun({ history: [], versions: [], current: null });
  fetch("/info")
    .then((response) => response.json())
    .then((info) => {
      buildBars(info.class_names);
      showBars(null, -1);
      const parts = [info.run ? "run " + info.run : info.model];
      if (info.dataset) parts.push(info.dataset);
      if (info.architecture) parts.push(info.architecture);
      if (info.test_accuracy !== null && info.test_accuracy !== undefined) parts.push("test accuracy " + (info.test_accuracy * 100).toFixed(2) + "%");
      document.getElementById("model").textContent = parts.join(" · ");
      document.getElementById("tfs").textContent = "POST /v1/models/" + info.tf_serving_name + ":predict";
      state.info = info;
    })
    .catch(() => {
      document.getElementById("model").textContent = "the model's description could not be loaded";
    });
  listen();
})();
