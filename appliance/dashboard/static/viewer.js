// The result viewer: the CT and the segment numbers (NIfTI, same grid) in niivue, axial / coronal /
// sagittal slices and a 3D rendering, per-segment visibility and opacity with the SEG's names and
// colours, CT window presets. window.applianceViewer exposes the state for tests.
"use strict";
(async function () {
  const root = document.getElementById("viewer");
  const status = document.getElementById("status");
  const base = root.dataset.base;
  // Radiological convention, as CT is read: the patient's right on the screen's left.
  const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: false, isColorbar: false,
                                 crosshairWidth: 0, multiplanarForceRender: true, dragAndDropEnabled: false,
                                 isRadiologicalConvention: true });
  const state = { nv, segments: [], visible: {}, opacity: {}, ready: false };
  window.applianceViewer = state;
  await nv.attachTo("gl");
  const info = await (await fetch(base + "/segments.json", { credentials: "same-origin" })).json();
  state.segments = info.segments;
  await nv.loadVolumes([
    { url: base + "/ct.nii.gz", name: "ct.nii.gz", colormap: "gray" },
    { url: base + "/labels.nii.gz", name: "labels.nii.gz", opacity: 1 },
  ]);
  const ct = nv.volumes[0];
  const labels = nv.volumes[1];

  function applyLabels() {
    // One label colour table: alpha 0 hides a segment; opacity scales its alpha.
    const table = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""] };
    for (const s of state.segments) {
      table.R.push(s.rgb[0]); table.G.push(s.rgb[1]); table.B.push(s.rgb[2]);
      table.A.push(state.visible[s.number] ? Math.round(255 * state.opacity[s.number]) : 0);
      table.I.push(s.number); table.labels.push(s.label);
    }
    labels.setColormapLabel(table);
    nv.updateGLVolume();
  }

  function setWindow(level, width) {
    ct.cal_min = level - width / 2;
    ct.cal_max = level + width / 2;
    nv.updateGLVolume();
    for (const b of document.querySelectorAll("#windows button")) {
      b.classList.toggle("active", Number(b.dataset.level) === level && Number(b.dataset.width) === width);
    }
  }

  const views = { axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal, sagittal: nv.sliceTypeSagittal,
                  render: nv.sliceTypeRender, multi: nv.sliceTypeMultiplanar };
  function setView(name) {
    nv.setSliceType(views[name]);
    for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === name);
    state.view = name;
  }

  const rows = document.querySelector("#segment-controls tbody");
  for (const s of state.segments) {
    state.visible[s.number] = true;
    state.opacity[s.number] = 0.5;
    const row = document.createElement("tr");
    row.dataset.segment = String(s.number);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = s.hex;
    const toggle = document.createElement("input");
    toggle.type = "checkbox"; toggle.checked = true; toggle.className = "visible";
    toggle.setAttribute("aria-label", "show " + s.label);
    toggle.addEventListener("change", () => { state.visible[s.number] = toggle.checked; applyLabels(); });
    const opacity = document.createElement("input");
    opacity.type = "range"; opacity.min = "0"; opacity.max = "1"; opacity.step = "0.05"; opacity.value = "0.5";
    opacity.className = "opacity";
    opacity.setAttribute("aria-label", "opacity of " + s.label);
    opacity.addEventListener("input", () => { state.opacity[s.number] = Number(opacity.value); applyLabels(); });
    const name = document.createElement("label");
    name.append(toggle, swatch, document.createTextNode(s.label));
    const cells = [name, opacity, document.createTextNode(s.volume_ml.toFixed(1) + " mL")];
    for (const c of cells) { const td = document.createElement("td"); td.append(c); row.append(td); }
    rows.append(row);
  }
  for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => setView(b.dataset.view));
  for (const b of document.querySelectorAll("#windows button")) {
    b.addEventListener("click", () => setWindow(Number(b.dataset.level), Number(b.dataset.width)));
  }
  applyLabels();
  setWindow(40, 400);
  setView("multi");
  status.textContent = state.segments.length + " segment(s); drag to move, scroll to change slice.";
  state.ready = true;
})().catch((error) => {
  document.getElementById("status").textContent = "Cannot show this result: " + error;
  throw error;
});
