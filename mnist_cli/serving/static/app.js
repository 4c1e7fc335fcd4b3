// The drawing page: strokes with pointer events (mouse, touch, pen), a debounced live
// prediction from the server (which does the same preprocessing as `mnist predict`),
// the ten probabilities as bars and the 28x28 digit the network saw. No outside assets.
"use strict";
(function () {
  const DEBOUNCE_MS = 150;
  const LINE_WIDTH = 20;
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const seen = document.getElementById("seen").getContext("2d");
  const bars = document.getElementById("bars");
  const predictionEl = document.getElementById("prediction");
  const probabilityEl = document.getElementById("probability");
  const statusEl = document.getElementById("status");
  const fileInput = document.getElementById("file");
  // version: what is on the pad now; shown: the version whose prediction is displayed.
  // Tests (and curious people) read window.mnist to know when the page has settled.
  const state = (window.mnist = { version: 0, shown: 0, busy: false, inked: false, classNames: [] });
  let timer = null;
  let stroke = null;
  let queued = null;

  function blank() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    state.inked = false;
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
      pct.textContent = "";
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

  function showSeen(image) {
    const data = seen.createImageData(28, 28);
    for (let i = 0; i < 28 * 28; i++) {
      const v = image ? image[Math.floor(i / 28)][i % 28] : 0;
      data.data[4 * i] = data.data[4 * i + 1] = data.data[4 * i + 2] = v;
      data.data[4 * i + 3] = 255;
    }
    seen.putImageData(data, 0, 0);
  }

  function showNothing(message) {
    predictionEl.textContent = "–";
    predictionEl.dataset.class = "";
    probabilityEl.textContent = "";
    showBars(null, -1);
    showSeen(null);
    statusEl.textContent = message || "";
  }

  function show(item) {
    if (item.error) {
      showNothing(item.error);
      return;
    }
    predictionEl.textContent = item.name;
    predictionEl.dataset.class = String(item.prediction);
    probabilityEl.textContent = (item.probability * 100).toFixed(1) + "%";
    showBars(item.probabilities, item.prediction);
    showSeen(item.image);
    statusEl.textContent = item.path === "request body" ? "" : "read " + item.path;
  }

  // One request at a time; the newest pad (or upload) waiting goes next.
  async function send(body, contentType, version) {
    if (state.busy) {
      queued = [body, contentType, version];
      return;
    }
    state.busy = true;
    try {
      // A form (contentType null) carries its own Content-Type with the boundary.
      const headers = contentType ? { "Content-Type": contentType } : {};
      const response = await fetch("/predict?image=true", { method: "POST", headers, body });
      const answer = await response.json();
      if (version === state.version) {
        if (Array.isArray(answer)) show(answer[0]);
        else if (answer.results && answer.results[0]) show(answer.results[0]);
        else showNothing(answer.error || "the server answered " + response.status);
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
    timer = setTimeout(predictPad, DEBOUNCE_MS);
  }

  function clear() {
    clearTimeout(timer);
    blank();
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
      state.upload = false;
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
    state.upload = true;
    const version = state.version;
    // The picture is shown on the pad, but the server reads the file itself, as `mnist predict` would.
    const url = URL.createObjectURL(file);
    const picture = new Image();
    picture.onload = () => {
      blank();
      const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
      const w = picture.width * scale;
      const h = picture.height * scale;
      ctx.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
      URL.revokeObjectURL(url);
    };
    picture.src = url;
    // Sent as a form, so the answer carries the file's name, as `mnist predict` shows it.
    const form = new FormData();
    form.append("file", file, file.name);
    send(form, null, version);
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
})();
