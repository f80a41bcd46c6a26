// The page's logic: pick / drop / paste an image or click an example, POST it to
// /api/predict, draw the answer. Server text is only ever inserted with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let maxUploadBytes = null; // from /api/model; checked here too, to save a useless upload
let latestRequest = 0; // answers to superseded requests are dropped

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  setStatus("");
  $("error").textContent = text;
  $("error").hidden = false;
}

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

async function describeModel() {
  try {
    const response = await fetch("/api/model");
    const info = await response.json();
    maxUploadBytes = info.max_upload_bytes;
    const parts = [`model ${info.name}`, `${(info.params / 1e6).toFixed(2)} M parameters`];
    if (typeof info.test_accuracy === "number") {
      parts.push(`test accuracy ${percent(info.test_accuracy)}`);
    }
    parts.push(`backend ${info.backend}`);
    $("model-info").textContent = parts.join(" \u00b7 ");
  } catch (err) {
    $("model-info").textContent = "model description unavailable";
  }
}

async function loadExamples() {
  let payload;
  try {
    payload = await (await fetch("/api/examples")).json();
  } catch (err) {
    return; // examples are a convenience; the page works without them
  }
  const box = $("examples");
  for (const example of payload.examples || []) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `test image #${example.index} (${example.label})`;
    const img = document.createElement("img");
    img.src = example.png;
    img.alt = example.label;
    img.className = "pixelated";
    button.appendChild(img);
    // Test images are already 28x28 Fashion-MNIST items: send them as they are, so the model
    // sees exactly the test image.
    button.addEventListener("click", () =>
      classify(dataUrlToBlob(example.png), `test-${example.index}.png`, false, example.png));
    box.appendChild(button);
  }
  $("examples-panel").hidden = box.children.length === 0;
}

function dataUrlToBlob(url) {
  const [header, data] = url.split(",");
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: header.slice(5).split(";")[0] });
}

async function classify(blob, name, preprocess, previewUrl) {
  const request = ++latestRequest;
  $("error").hidden = true;
  if (maxUploadBytes !== null && blob.size > maxUploadBytes) {
    showError(`${name}: ${(blob.size / 1048576).toFixed(1)} MiB is over the upload limit of ` +
              `${(maxUploadBytes / 1048576).toFixed(1)} MiB`);
    return;
  }
  setStatus(`classifying ${name}\u2026`);
  const form = new FormData();
  form.append("file", blob, name);
  form.append("top_k", $("top-k").value);
  form.append("preprocess", preprocess ? "true" : "false");
  let response, body;
  try {
    response = await fetch("/api/predict", { method: "POST", body: form });
    body = await response.json().catch(() => null);
  } catch (err) {
    if (request === latestRequest) showError(`cannot reach the server (${err.message})`);
    return;
  }
  if (request !== latestRequest) return;
  if (!response.ok) {
    showError(`${name}: ${errorText(response.status, body)}`);
    return;
  }
  render(body, previewUrl);
  setStatus(`classified ${name}`);
}

function errorText(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return `the server answered ${status}`;
}

function render(result, previewUrl) {
  const best = result.top[0];
  $("predicted-label").textContent = best.class;
  // Below the threshold the answer is "unsure" and names the runner-up too.
  $("predicted-unsure").textContent = result.unsure
    ? `unsure: ${best.class} or ${result.top[1].class}`
    : "";
  $("predicted-probability").textContent = `(${percent(best.probability)})`;
  $("calibration").textContent = result.calibrated
    ? `Probabilities calibrated (temperature ${result.temperature.toFixed(2)}).`
    : "Probabilities uncalibrated: the run has no validation logits.";

  const bars = $("bars");
  bars.replaceChildren();
  for (const { class: name, probability } of result.top) {
    const row = document.createElement("div");
    row.className = "bar-row";
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "bar-track";
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    fill.style.width = percent(probability);
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = percent(probability);
    row.append(label, track, value);
    bars.appendChild(row);
  }

  $("model-input").src = result.input_png;
  const hasCam = typeof result.gradcam_png === "string";
  $("gradcam-figure").hidden = !hasCam;
  if (hasCam) {
    $("gradcam").src = result.gradcam_png;
    $("gradcam-class").textContent = best.class;
  }
  $("original-figure").hidden = !previewUrl;
  if (previewUrl) $("original").src = previewUrl;

  const steps = $("steps");
  steps.replaceChildren();
  for (const step of result.steps) {
    const item = document.createElement("li");
    item.textContent = step;
    steps.appendChild(item);
  }
  $("result").hidden = false;
}

let previewObjectUrl = null;

function classifyFile(file) {
  if (!file) return;
  if (previewObjectUrl) URL.revokeObjectURL(previewObjectUrl);
  // A .npy array is not something the browser can show; the model input still is.
  previewObjectUrl = file.name.endsWith(".npy") ? null : URL.createObjectURL(file);
  classify(file, file.name, $("preprocess").checked, previewObjectUrl);
}

function setUp() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    classifyFile(input.files[0]);
    input.value = ""; // picking the same file again must fire "change" again
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    classifyFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = event.clipboardData && event.clipboardData.files[0];
    if (file) classifyFile(file);
  });
  describeModel();
  loadExamples();
}

setUp();
