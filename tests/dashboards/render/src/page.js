// Draws one Grafana dashboard model with Grafana's own frontend packages (@grafana/data for
// transformations, field config, units, mappings and reductions; @grafana/ui for the panels).
// What is not on npm is done here and kept small: the InfluxQL response -> DataFrame conversion
// of Grafana's InfluxDB datasource, the dashboard grid, panel repeats, and the state timeline
// (drawn as coloured bands from Grafana's own display processor).
//
// The page calls window.influxQuery({panel, refId, query, interval, scoped}) (given by the
// test) for every target, and leaves a JSON report of what it drew in window.renderReport.
//
// require(), not import: esbuild then picks the packages' CommonJS builds (their .mjs builds
// default-import CommonJS packages and React fails with "Element type is invalid").
const React = require('react');
const { createRoot } = require('react-dom/client');
const { lastValueFrom } = require('rxjs');
const data = require('@grafana/data');
const ui = require('@grafana/ui');
require('uplot/dist/uPlot.min.css'); // what Grafana's own stylesheet brings for the charts

const h = React.createElement;
const WIDTH = 1600;
const CELL_H = 30; // Grafana's GRID_CELL_HEIGHT
const MARGIN = 8; // Grafana's GRID_CELL_VMARGIN
const theme = data.createTheme();

// standardTransformers lists joinByField twice (under its deprecated name too): once each.
data.standardTransformersRegistry.setInit(() =>
  [...new Set(Object.values(data.standardTransformers))].map((t) => ({
    id: t.id,
    aliasIds: t.aliasIds,
    name: t.name,
    description: t.description,
    transformation: t,
    editor: () => null,
  }))
);

// ---- InfluxQL results as Grafana's InfluxDB datasource turns them into frames ----

function fieldType(values) {
  const v = values.find((x) => x !== null && x !== undefined);
  if (typeof v === 'boolean') return data.FieldType.boolean;
  if (typeof v === 'string') return data.FieldType.string;
  return data.FieldType.number;
}

function aliasName(alias, measurement, column, tags) {
  return alias
    .replace(/\$tag_([a-zA-Z0-9_]+)/g, (_, key) => tags[key] ?? '')
    .replace(/\$col/g, column)
    .replace(/\$(m|measurement)\b/g, measurement);
}

// time_series: one frame per series and value column (Time + Value, labels = tags).
function timeSeriesFrames(result, target) {
  const frames = [];
  for (const series of result.series || []) {
    const tags = series.tags || {};
    series.columns.forEach((column, index) => {
      if (index === 0) return;
      const times = series.values.map((row) => row[0]);
      const values = series.values.map((row) => row[index]);
      const tagText = Object.entries(tags).map(([k, v]) => `${k}: ${v}`).join(', ');
      const name = `${series.name}.${column}${tagText ? ` {${tagText}}` : ''}`;
      const config = target.alias
        ? { displayNameFromDS: aliasName(target.alias, series.name, column, tags) }
        : {};
      frames.push({
        name,
        refId: target.refId,
        fields: [
          { name: 'Time', type: data.FieldType.time, values: times, config: {} },
          { name: 'Value', type: fieldType(values), values, labels: tags, config },
        ],
        length: times.length,
      });
    });
  }
  return frames;
}

// table: one frame named after the measurement: Time, the GROUP BY tags, the columns.
function tableFrames(result, target) {
  const all = result.series || [];
  if (!all.length) return [];
  const tagKeys = Object.keys(all[0].tags || {});
  const columns = all[0].columns;
  const rows = all.flatMap((s) => s.values.map((row) => ({ tags: s.tags || {}, row })));
  const fields = [
    { name: 'Time', type: data.FieldType.time, values: rows.map((r) => r.row[0]), config: {} },
    ...tagKeys.map((key) => ({
      name: key,
      type: data.FieldType.string,
      values: rows.map((r) => r.tags[key]),
      config: {},
    })),
    ...columns.slice(1).map((column, i) => {
      const values = rows.map((r) => r.row[i + 1]);
      return { name: column, type: fieldType(values), values, config: {} };
    }),
  ];
  return [{ name: all[0].name, refId: target.refId, fields, length: rows.length }];
}

// ---- the field config registry: every option the dashboards set, applied as given ----

function optionIds(panel) {
  const ids = new Set(['unit', 'decimals', 'min', 'max', 'noValue', 'thresholds', 'mappings', 'color']);
  const defaults = panel.fieldConfig?.defaults || {};
  Object.keys(defaults).forEach((k) => k !== 'custom' && ids.add(k));
  Object.keys(defaults.custom || {}).forEach((k) => ids.add(`custom.${k}`));
  for (const o of panel.fieldConfig?.overrides || []) {
    (o.properties || []).forEach((p) => ids.add(p.id));
  }
  return [...ids];
}

function fieldConfigRegistry(panel) {
  const registry = new data.FieldConfigOptionsRegistry();
  registry.setInit(() =>
    optionIds(panel).map((id) => {
      const custom = id.startsWith('custom.');
      return {
        id,
        path: custom ? id.slice(7) : id,
        isCustom: custom,
        name: id,
        process: data.identityOverrideProcessor,
        override: () => null,
        editor: () => null,
        shouldApply: () => true,
      };
    })
  );
  return registry;
}

// ---- queries, transformations and overrides of one panel ----

function interval(panel, range, widthPx) {
  const min = panel.interval || '1s'; // the datasource's min interval (provisioning: 1s)
  return data.rangeUtil.calculateInterval(range, widthPx, min).interval;
}

async function panelFrames(panel, range, widthPx, scoped) {
  const frames = [];
  const step = interval(panel, range, widthPx);
  for (const target of panel.targets || []) {
    const result = await window.influxQuery({ panel: panel.title, query: target.query, refId: target.refId, interval: step, scoped });
    if (result.error) throw new Error(`${panel.title} ${target.refId}: ${result.error}`);
    const made = target.resultFormat === 'table' ? tableFrames(result, target) : timeSeriesFrames(result, target);
    frames.push(...made.map((f) => data.toDataFrame(f)));
  }
  const transformed = panel.transformations?.length
    ? await lastValueFrom(data.transformDataFrame(panel.transformations, frames))
    : frames;
  return data.applyFieldOverrides({
    data: transformed,
    fieldConfig: panel.fieldConfig || { defaults: {}, overrides: [] },
    fieldConfigRegistry: fieldConfigRegistry(panel),
    replaceVariables: (s) => s,
    theme,
    timeZone: 'browser',
  });
}

const hasRows = (frames) => frames.some((f) => f.length > 0);

// ---- the visualizations ----

function noData(text) {
  return h('div', { className: 'no-data', style: { padding: 16, color: theme.colors.text.secondary } }, text || 'No data');
}

// What a stat or bar gauge shows per value: Grafana's own reduction, mappings and colours.
function displayValues(panel, frames) {
  return data.getFieldDisplayValues({
    fieldConfig: panel.fieldConfig,
    reduceOptions: (panel.options || {}).reduceOptions,
    replaceVariables: (s) => s,
    theme,
    data: frames,
    timeZone: 'browser',
  });
}

function stat(panel, frames, w, hh, report) {
  const options = panel.options || {};
  const values = displayValues(panel, frames);
  report.values = values.map((v) => ({
    title: v.display.title,
    text: v.display.text,
    prefix: v.display.prefix || '',
    suffix: v.display.suffix || '',
    color: v.display.color,
    numeric: v.display.numeric,
  }));
  return h(ui.VizRepeater, {
    source: frames,
    getValues: () => values,
    renderValue: (p) =>
      h(ui.BigValue, {
        value: p.value.display,
        width: p.width,
        height: p.height,
        colorMode: options.colorMode,
        graphMode: 'none',
        justifyMode: options.justifyMode,
        textMode: options.textMode,
        alignmentFactors: p.alignmentFactors,
        count: p.count,
        text: options.text,
        disableWideLayout: !options.wideLayout,
        theme,
      }),
    getAlignmentFactors: data.getDisplayValueAlignmentFactors,
    width: w,
    height: hh,
    orientation: options.orientation || 'auto',
    itemSpacing: 3,
    autoGrid: true,
    minVizHeight: options.minVizHeight,
    minVizWidth: options.minVizWidth,
    maxVizHeight: options.maxVizHeight,
  });
}

function barGauge(panel, frames, w, hh, report) {
  const options = panel.options || {};
  const values = displayValues(panel, frames);
  report.values = values.map((v) => ({ title: v.display.title, text: v.display.text, suffix: v.display.suffix || '', color: v.display.color, numeric: v.display.numeric }));
  if (!hasRows(frames)) return noData();
  return h(ui.VizRepeater, {
    source: frames,
    getValues: () => values,
    renderValue: (p) =>
      h(ui.BarGauge, {
        value: p.value.display,
        field: p.value.field,
        width: p.width,
        height: p.height,
        orientation: options.orientation || 'horizontal',
        displayMode: options.displayMode || 'basic',
        namePlacement: options.namePlacement,
        valueDisplayMode: options.valueMode,
        showUnfilled: options.showUnfilled,
        text: options.text,
        alignmentFactors: p.alignmentFactors,
        isOverflow: false,
        theme,
      }),
    getAlignmentFactors: data.getDisplayValueAlignmentFactors,
    width: w,
    height: hh,
    orientation: options.orientation || 'horizontal',
    itemSpacing: 8,
  });
}

function table(panel, frames, w, hh) {
  if (!frames.length) return noData();
  const sortBy = panel.options?.sortBy || [];
  return h(ui.Table, { data: frames[0], width: w, height: hh, initialSortBy: sortBy, fieldConfig: panel.fieldConfig });
}

function timeSeries(panel, frames, w, hh, range) {
  if (!hasRows(frames)) return noData();
  return h(ui.TimeSeries, {
    frames,
    width: w,
    height: hh,
    timeRange: range,
    timeZone: 'browser',
    legend: panel.options?.legend || { showLegend: true, displayMode: 'list', placement: 'bottom', calcs: [] },
    options: panel.options,
  });
}

// Approximated (Grafana's state timeline is app code): one band per series, each value coloured
// and named by the field's own display processor (its mappings and thresholds).
function stateBands(panel, frames, w, hh, range, report) {
  if (!hasRows(frames)) return noData();
  const labelW = 140;
  const rowH = hh / frames.length;
  report.rowHeight = rowH;
  const span = range.to.valueOf() - range.from.valueOf();
  const x = (t) => labelW + ((t - range.from.valueOf()) / span) * (w - labelW);
  const rows = frames.map((frame, r) => {
    const time = frame.fields.find((f) => f.type === 'time');
    const value = frame.fields.find((f) => f.type !== 'time');
    const name = data.getFieldDisplayName(value, frame, frames);
    const segments = [];
    for (let i = 0; i < frame.length; i++) {
      const v = value.values[i];
      if (v === null || v === undefined) continue;
      const shown = value.display(v);
      const end = i + 1 < frame.length ? time.values[i + 1] : range.to.valueOf();
      segments.push(
        h('div', {
          key: i,
          title: shown.text,
          style: { position: 'absolute', left: x(time.values[i]), width: Math.max(1, x(end) - x(time.values[i])), top: 1, bottom: 1, background: shown.color, opacity: 0.8 },
        })
      );
    }
    return h('div', { key: r, className: 'band', style: { position: 'absolute', top: r * rowH, height: rowH, left: 0, right: 0 } }, [
      h('div', { key: 'l', className: 'band-label', style: { width: labelW - 8, fontSize: 12, lineHeight: `${rowH}px`, overflow: 'hidden', whiteSpace: 'nowrap' } }, name),
      ...segments,
    ]);
  });
  return h('div', { style: { position: 'relative', width: w, height: hh } }, rows);
}

function visualization(panel, frames, w, hh, range, report) {
  switch (panel.type) {
    case 'stat':
      return stat(panel, frames, w, hh, report);
    case 'bargauge':
      return barGauge(panel, frames, w, hh, report);
    case 'table':
      return table(panel, frames, w, hh);
    case 'timeseries':
      return timeSeries(panel, frames, w, hh, range);
    case 'state-timeline':
      return stateBands(panel, frames, w, hh, range, report);
    default:
      return noData(`panel type ${panel.type} is not drawn here`);
  }
}

// ---- the dashboard: grid, repeats, report ----

function box(gridPos) {
  const colW = WIDTH / 24;
  return {
    left: gridPos.x * colW,
    top: gridPos.y * (CELL_H + MARGIN),
    width: gridPos.w * colW - MARGIN,
    height: gridPos.h * CELL_H + (gridPos.h - 1) * MARGIN,
  };
}

// A repeated panel once per value of its variable, side by side (maxPerRow), rows below.
function expandRepeats(panels, variables) {
  const out = [];
  let shift = 0;
  for (const panel of panels) {
    const moved = { ...panel, gridPos: { ...panel.gridPos, y: panel.gridPos.y + shift } };
    if (!panel.repeat) {
      out.push({ panel: moved, scoped: {} });
      continue;
    }
    const values = variables[panel.repeat] || [];
    const perRow = panel.maxPerRow || 4;
    const w = Math.floor(24 / Math.min(perRow, Math.max(values.length, 1)));
    values.forEach((value, i) => {
      const gridPos = { x: (i % perRow) * w, y: moved.gridPos.y + Math.floor(i / perRow) * panel.gridPos.h, w, h: panel.gridPos.h };
      const title = panel.title.split(`$${panel.repeat}`).join(value);
      out.push({ panel: { ...panel, title, gridPos }, scoped: { [panel.repeat]: [value] } });
    });
    shift += (Math.ceil(values.length / perRow) - 1) * panel.gridPos.h;
  }
  return out;
}

function frameReport(frames) {
  return frames.map((frame) => ({
    name: frame.name,
    refId: frame.refId,
    length: frame.length,
    fields: frame.fields.map((field) => ({
      name: field.name,
      displayName: data.getFieldDisplayName(field, frame, frames),
      type: field.type,
      values: Array.from(field.values),
      texts: field.display ? Array.from(field.values).map((v) => data.formattedValueToString(field.display(v))) : [],
      colors: field.display ? Array.from(field.values).map((v) => field.display(v).color) : [],
      config: { unit: field.config.unit, decimals: field.config.decimals, custom: field.config.custom, min: field.config.min, max: field.config.max, thresholds: field.config.thresholds },
    })),
  }));
}

async function renderDashboard(model, fromMs, toMs, variables, colorNames) {
  const range = { from: data.dateTime(fromMs), to: data.dateTime(toMs), raw: { from: data.dateTime(fromMs), to: data.dateTime(toMs) } };
  const laid = expandRepeats(model.panels.filter((p) => p.type !== 'row'), variables);
  const reports = [];
  const children = [];
  for (const { panel, scoped } of laid) {
    const place = box(panel.gridPos);
    const report = { title: panel.title, type: panel.type, box: place, scoped };
    let frames = [];
    try {
      frames = await panelFrames(panel, range, place.width, scoped);
    } catch (error) {
      report.error = String(error && error.stack ? error.stack : error);
    }
    report.frames = frameReport(frames);
    const content = (w, hh) => visualization(panel, frames, w, hh, range, report);
    children.push(
      h('div', { key: children.length, className: 'panel', 'data-title': panel.title, style: { position: 'absolute', ...place } },
        h(ui.PanelChrome, { title: panel.title, width: place.width, height: place.height }, content))
    );
    reports.push(report);
  }
  const height = Math.max(0, ...laid.map(({ panel }) => { const b = box(panel.gridPos); return b.top + b.height; }));
  document.body.style.background = theme.colors.background.canvas;
  const root = createRoot(document.getElementById('root'));
  root.render(h('div', { style: { position: 'relative', width: WIDTH, height } }, children));
  await new Promise((resolve) => setTimeout(resolve, 500));
  const colors = Object.fromEntries((colorNames || []).map((n) => [n, theme.visualization.getColorByName(n)]));
  window.renderReport = { panels: reports, height, colors };
  return window.renderReport;
}

// Text that does not fit: an element whose content is wider than it is, or that reaches past
// the right edge of its panel (a table wider than the panel).
function clipped() {
  const out = [];
  for (const panel of document.querySelectorAll('.panel')) {
    const right = panel.getBoundingClientRect().right;
    for (const el of panel.querySelectorAll('*')) {
      if (el.children.length || !el.textContent.trim()) continue;
      const box = el.getBoundingClientRect();
      const cut = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0;
      if (cut || (box.width > 0 && box.right > right + 1)) {
        out.push({ panel: panel.dataset.title, text: el.textContent, width: el.clientWidth, needs: el.scrollWidth, right: box.right, panelRight: right });
      }
    }
  }
  return out;
}

window.renderDashboard = renderDashboard;
window.clippedTexts = clipped;
