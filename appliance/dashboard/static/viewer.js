// The result viewer: the CT and its segments in niivue; axial / coronal / sagittal slices and a 3D
// rendering, per-segment visibility and opacity with the SEG's names and colours, CT window presets.
// NiiVue draws an overlay's voxel fully or not at all, with one opacity per volume, so each segment
// is its own small volume ("layers"); a SEG with very many segments comes as one label volume
// instead (visibility per segment, one opacity). window.applianceViewer exposes the state for tests.
"use strict";
(async function () {
  const root = document.getElementById("viewer");
  const status = document.getElementById("status");
  const base = root.dataset.base;
  // Radiological convention, as CT is read: the patient's right on the screen's left.
  const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: false, isColorbar: false,
                                 crosshairWidth: 0, multiplanarForceRender: true, dragAndDropEnabled: false,
                                 isRadiologicalConvention: true });
  const state = { nv, segments: [], visible: {}, opacity: {}, layer: {}, ready: false };
  window.applianceViewer = state;
  await nv.attachTo("gl");
  const info = await (await fetch(base + "/segments.json", { credentials: "same-origin" })).json();
  state.segments = info.segments;
  state.layers = info.layers;
  const volumes = [{ url: base + "/ct.nii.gz", name: "ct.nii.gz", colormap: "gray" }];
  if (info.layers) {
    for (const s of info.segments) {
      if (!s.file) continue;
      state.layer[s.number] = volumes.length;
      volumes.push({ url: base + "/" + s.file, name: s.file, opacity: 0.5 });
    }
  } else {
    volumes.push({ url: base + "/labels.nii.gz", name: "labels.nii.gz", opacity: 0.5 });
  }
  await nv.loadVolumes(volumes);
  const ct = nv.volumes[0];

  function lut(entries) {
    const table = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""] };
    for (const [value, s, shown] of entries) {
      table.R.push(s.rgb[0]); table.G.push(s.rgb[1]); table.B.push(s.rgb[2]);
      table.A.push(shown ? 255 : 0); table.I.push(value); table.labels.push(s.label);
    }
    return table;
  }

  function apply() {
    if (state.layers) {
      for (const s of state.segments) {
        const index = state.layer[s.number];
        if (index === undefined) continue;
        nv.volumes[index].setColormapLabel(lut([[1, s, true]]));
        nv.volumes[index].opacity = state.visible[s.number] ? state.opacity[s.number] : 0;
      }
    } else {
      const labels = nv.volumes[1];
      labels.setColormapLabel(lut(state.segments.map((s) => [s.number, s, state.visible[s.number]])));
      labels.opacity = state.opacity.all;
    }
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

  function slider(label, key) {
    const input = document.createElement("input");
    input.type = "range"; input.min = "0"; input.max = "1"; input.step = "0.05"; input.value = "0.5";
    input.className = "opacity";
    input.setAttribute("aria-label", "opacity of " + label);
    state.opacity[key] = 0.5;
    input.addEventListener("input", () => { state.opacity[key] = Number(input.value); apply(); });
    return input;
  }

  const rows = document.querySelector("#segment-controls tbody");
  for (const s of state.segments) {
    state.visible[s.number] = true;
    const row = document.createElement("tr");
    row.dataset.segment = String(s.number);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = s.hex;
    const toggle = document.createElement("input");
    toggle.type = "checkbox"; toggle.checked = true; toggle.className = "visible";
    toggle.setAttribute("aria-label", "show " + s.label);
    toggle.addEventListener("change", () => { state.visible[s.number] = toggle.checked; apply(); });
    const name = document.createElement("label");
    name.append(toggle, swatch, document.createTextNode(s.label));
    const own = state.layers ? slider(s.label, s.number) : document.createTextNode("");
    const cells = [name, own, document.createTextNode(s.volume_ml.toFixed(1) + " mL")];
    for (const c of cells) { const td = document.createElement("td"); td.append(c); row.append(td); }
    rows.append(row);
  }
  if (!state.layers) {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 3;
    td.append(document.createTextNode("Opacity of all segments "), slider("all segments", "all"));
    row.append(td);
    rows.append(row);
  }
  for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => setView(b.dataset.view));
  for (const b of document.querySelectorAll("#windows button")) {
    b.addEventListener("click", () => setWindow(Number(b.dataset.level), Number(b.dataset.width)));
  }
  apply();
  setWindow(40, 400);
  setView("multi");
  status.textContent = state.segments.length + " segment(s); drag to move, scroll to change slice.";
  state.ready = true;
})().catch((error) => {
  document.getElementById("status").textContent = "Cannot show this result: " + error;
  throw error;
});
