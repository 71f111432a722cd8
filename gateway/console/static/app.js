// 监管控制台: a small application over the gateway's query API (/api/v1). No build step, no framework.
// Every value from the server is put into the page as text (textContent), never as HTML.
"use strict";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let me = null; // GET /api/v1/auth/whoami: user, role, permissions, csrf_token
let unmask = null; // an auditor's stated reason while personal data is shown unmasked

const ROLES = { engineer: "集成工程师", operator: "审批局业务人员", supervisor: "监察人员", auditor: "审计人员" };
const STATUS = { received: "已申报", accepted: "已受理", correction: "补齐补正", refused: "不予受理", completed: "已办结" };
const WARNING = { none: "无", yellow: "黄牌", red: "红牌" };
const SEVERITY = { red: "红色", yellow: "黄色", info: "提示" };
const DELIVERY = { pending: "待投递", inflight: "投递中", delivered: "已投递", dead: "死信" };
const KINDS = {
  case: "办件", acceptance: "受理", process_step: "办理环节", correction: "补正", special_procedure: "特别程序",
  completion: "办结", approval_result: "许可决定", supervision_result: "监管结果", supervision_alert: "监察预警",
  evaluation: "好差评", audit_seal: "审计封印",
};
const VERIFY = {
  proven: "已由签名封印证明", pending_signature: "封印待签名", unsealed: "尚未封印", broken: "校验失败",
  not_checked: "未校验", partly_proven: "部分已证明", not_yet_sealed: "尚未封印", no_entries: "无审计记录",
};
const ACTIONS = {
  received: "接收", duplicate: "重复", superseded: "旧版本", quarantined: "隔离", delivered: "已投递", failed: "投递失败",
  dead_lettered: "转入死信", replayed: "重放", reconciled: "对账恢复", alert_raised: "产生预警", unmasked: "查看个人信息",
  alert_acknowledged: "确认预警",
};

// --------------------------------------------------------------------------- helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const can = (permission) => Boolean(me && me.permissions.includes(permission));
const fmtTime = (value) => (value ? String(value).replace("T", " ").replace(/\.\d+/, "").replace("+08:00", "") : "");
const badge = (text, cls) => h("span", { class: `badge ${cls || ""}` }, text);
const warningBadge = (w) => badge(WARNING[w] || w, `w-${w}`);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params, options) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") query.set(k, v);
  const method = (options && options.method) || "GET";
  if (unmask && method === "GET" && !(options && options.masked)) { query.set("unmask", "true"); query.set("reason", unmask); }
  const qs = query.toString();
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = me.csrf_token;
    init.body = JSON.stringify((options && options.body) || {});
  }
  const response = await fetch(path + (qs ? `?${qs}` : ""), init);
  if (response.status === 401) { location.href = "/login"; throw new ApiError(401, "请重新登录"); }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

function page(title, ...content) {
  main.replaceChildren(h("h1", {}, title), ...content);
}

function failure(error) {
  return h("p", { class: "error", role: "alert" }, `出错了：${error.message}`);
}

function table(columns, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty || "没有符合条件的记录。");
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c[0])))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", {}, c[1](row)))))));
}

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function select(name, options, value) {
  return h("select", { name }, Object.entries(options).map(([k, v]) => h("option", { value: k, selected: k === value }, v)));
}

function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) if (String(v).trim()) out[k] = String(v).trim();
  return out;
}

function setHash(path, params) {
  const query = new URLSearchParams(params || {}).toString();
  location.hash = `#/${path}${query ? `?${query}` : ""}`;
}

function caseLink(caseNo) {
  return caseNo ? h("a", { href: `#/case/${encodeURIComponent(caseNo)}` }, caseNo) : "";
}

function details(summary, value) {
  return h("details", {}, h("summary", {}, summary), h("pre", {}, JSON.stringify(value, null, 2)));
}

// --------------------------------------------------------------------------- cases

async function casesPage(params) {
  const form = h("form", { class: "filters", id: "case-search" },
    field("办件编号", h("input", { name: "case_no", value: params.case_no || "", placeholder: "前缀即可" })),
    field("申请人名称或统一社会信用代码", h("input", { name: "applicant", value: params.applicant || "" })),
    field("事项编码", h("input", { name: "item_code", value: params.item_code || "" })),
    field("行政区划", h("input", { name: "region", value: params.region || "", placeholder: "如 3706" })),
    field("办件状态", select("status", { "": "全部", ...STATUS }, params.status || "")),
    field("预警", select("warning", { "": "全部", ...WARNING }, params.warning || "")),
    h("button", { type: "submit" }, "查询"));
  form.addEventListener("submit", (event) => { event.preventDefault(); setHash("cases", formValues(form)); });
  const results = h("div", { id: "case-results" }, h("p", { class: "loading" }, "查询中…"));
  page("办件查询", form, results);
  try {
    const data = await api("/api/v1/cases", { ...params, limit: 50 });
    const total = data.total_is_lower_bound ? "超过 10000" : data.total;
    results.replaceChildren(
      h("p", { class: "summary" }, `共 ${total} 件${data.masked ? "（个人信息已脱敏）" : "（未脱敏，已记入审计）"}`),
      table([
        ["办件编号", (r) => caseLink(r.case_no)],
        ["事项", (r) => [r.item_code || "", r.item_name ? ` ${r.item_name}` : ""]],
        ["申请人", (r) => r.applicant_name || ""],
        ["行政区划", (r) => r.region_code || ""],
        ["实施部门", (r) => r.department || ""],
        ["状态", (r) => STATUS[r.status] || r.status],
        ["预警", (r) => warningBadge(r.warning)],
        ["申报时间", (r) => fmtTime(r.submitted_at)],
        ["承诺办结", (r) => fmtTime(r.due_at)],
        ["最近活动", (r) => fmtTime(r.last_received_at)],
      ], data.items),
      data.next ? h("button", { class: "more", onclick: () => setHash("cases", { ...params, before: data.next.before }) },
        "下一页") : "");
  } catch (error) {
    results.replaceChildren(failure(error));
  }
}

// --------------------------------------------------------------------------- one case

async function casePage(caseNo) {
  page(`办件 ${caseNo}`, h("p", { class: "loading" }, "加载中…"));
  let data;
  try {
    data = await api(`/api/v1/cases/${encodeURIComponent(caseNo)}`);
  } catch (error) {
    page(`办件 ${caseNo}`, failure(error));
    return;
  }
  const c = data.case || {};
  const facts = h("dl", { class: "facts" },
    [["事项", `${c.item_code || ""} ${c.item_name || ""}`], ["申请人", c.applicant_name], ["行政区划", c.region_code],
      ["实施部门", c.department], ["状态", STATUS[c.status] || c.status], ["申报时间", fmtTime(c.submitted_at)],
      ["受理时间", fmtTime(c.accepted_at)], ["承诺办结", fmtTime(c.due_at)], ["办结时间", fmtTime(c.completed_at)],
      ["按时办结", c.on_time === true ? "是" : c.on_time === false ? "否（超期）" : "—"]]
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v || "—")]).flat(),
    h("dt", {}, "预警"), h("dd", {}, warningBadge(c.warning || "none"),
      c.backfilled ? badge("补录", "w-yellow") : "", c.outside_system ? badge("体外循环", "w-red") : ""));
  const verification = data.verification
    ? h("p", { class: `verify v-${data.verification.verdict}`, id: "verification" },
      `审计链校验：${VERIFY[data.verification.verdict] || data.verification.verdict}`,
      `（已证明 ${data.verification.counts.proven}，待签名 ${data.verification.counts.pending_signature}，` +
      `未封印 ${data.verification.counts.unsealed}，失败 ${data.verification.counts.broken}）`)
    : h("p", { class: "muted" }, "您的角色不能查看审计记录。");
  const links = data.links;
  const linkList = h("ul", { class: "links" },
    links.licences.map((l) => h("li", {}, `证照 ${l.license_no}${l.license_name ? `（${l.license_name}）` : ""}`,
      l.decisions.map((d) => ` · 许可决定 ${d.decision_no}，${d.decided_on || ""}`))),
    links.supervision_results.map((s) => h("li", {}, `监管结果 ${s.decision_no}：${s.result_type || ""}`,
      s.license_effect && s.license_effect !== "none" ? `，对许可：${s.license_effect}` : "",
      s.authority ? `，${s.authority}` : "", s.decided_on ? `，${s.decided_on}` : "")));
  const timeline = table([
    ["时间", (e) => fmtTime(e.at)],
    ["类别", (e) => ({ record: "记录", delivery: "投递", audit: "审计" }[e.type])],
    ["内容", (e) => e.type === "record" ? `${KINDS[e.kind] || e.kind}（${e.system}，版本 ${e.version}${e.status !== "current" ? `，${e.status}` : ""}）`
      : e.type === "delivery" ? `${KINDS[e.kind] || e.kind} → ${e.destination}（第 ${e.attempts} 次）${e.last_error ? `：${e.last_error}` : ""}`
        : `#${e.seq} ${ACTIONS[e.action] || e.action}`],
    ["状态", (e) => e.type === "delivery" ? badge(DELIVERY[e.state] || e.state, `d-${e.state}`)
      : e.type === "audit" ? badge(VERIFY[e.verification] || e.verification || "", `v-${e.verification}`) : ""],
  ], data.timeline, "这个办件还没有记录。");
  const alerts = data.records.filter((r) => r.kind === "supervision_alert");
  main.replaceChildren(
    h("h1", {}, `办件 ${caseNo}`),
    h("p", { class: "summary" }, data.masked ? "个人信息已脱敏。" : "未脱敏（已记入审计）。"),
    facts, verification,
    h("h2", {}, "关联：证照与监管结果"), links.licences.length || links.supervision_results.length ? linkList
      : h("p", { class: "muted" }, "尚无证照或回传的监管结果。"),
    h("h2", {}, "预警"), table([
      ["类型", (r) => data.alert_labels[r.record.data.alert_type] || r.record.data.alert_type],
      ["颜色", (r) => badge(SEVERITY[r.record.data.severity] || r.record.data.severity, `w-${r.record.data.severity}`)],
      ["说明", (r) => r.record.data.description || ""],
      ["确认", (r) => { const a = data.acknowledgements[r.record_key]; return a ? `${a.acked_by} ${fmtTime(a.acked_at)}：${a.note}` : "未确认"; }],
    ], alerts, "没有预警。"),
    h("h2", {}, "时间线"), timeline,
    h("h2", {}, "记录内容"), h("div", {}, data.records.map((r) =>
      details(`${fmtTime(r.receipt_time)} ${KINDS[r.kind] || r.kind} · ${r.system} · ${r.record_key}`, r.record))),
    ...(data.audit ? [h("h2", {}, "审计记录"), h("div", {}, data.audit.map((a) =>
      details(`#${a.seq} ${fmtTime(a.at)} ${ACTIONS[a.action] || a.action} · ${VERIFY[a.verification.state] || ""}`, a.entry)))] : []));
}

// --------------------------------------------------------------------------- alerts

async function alertsPage(params) {
  let types = [];
  try { types = (await api("/api/v1/supervision/alert-types", {}, { masked: true })).items; } catch (error) { /* shown below */ }
  const typeOptions = { "": "全部类型" };
  for (const t of types) typeOptions[t.code] = `${t.label}（未确认 ${t.open}）`;
  const form = h("form", { class: "filters", id: "alert-filters" },
    field("预警类型", select("type", typeOptions, params.type || "")),
    field("颜色", select("severity", { "": "全部", red: "红色", yellow: "黄色", info: "提示" }, params.severity || "")),
    field("确认状态", select("acked", { "": "全部", false: "未确认", true: "已确认" }, params.acked || "")),
    field("办件编号", h("input", { name: "case_no", value: params.case_no || "" })),
    h("button", { type: "submit" }, "筛选"));
  form.addEventListener("submit", (event) => { event.preventDefault(); setHash("alerts", formValues(form)); });
  const results = h("div", { id: "alert-results" }, h("p", { class: "loading" }, "加载中…"));
  page("监察预警", form, results);
  try {
    const data = await api("/api/v1/supervision/alerts", { ...params, limit: 50 });
    results.replaceChildren(table([
      ["产生时间", (a) => fmtTime(a.raised_at)],
      ["类型", (a) => a.label],
      ["颜色", (a) => badge(SEVERITY[a.severity] || a.severity, `w-${a.severity}`)],
      ["办件编号", (a) => caseLink(a.case_no)],
      ["责任部门", (a) => a.department || ""],
      ["说明", (a) => a.description || ""],
      ["确认", (a) => a.acked_by ? `${a.acked_by}（${ROLES[a.acked_role] || a.acked_role}）${fmtTime(a.acked_at)}：${a.ack_note}`
        : can("alerts:acknowledge") ? ackForm(a) : "未确认"],
    ], data.items), data.next ? h("button", { class: "more", onclick: () => setHash("alerts", { ...params, before_id: data.next.before_id }) }, "下一页") : "");
  } catch (error) {
    results.replaceChildren(failure(error));
  }
}

function ackForm(alert) {
  const note = h("input", { name: "note", placeholder: "处理说明", required: true, maxlength: 500 });
  const form = h("form", { class: "ack" }, note, h("button", { type: "submit" }, "确认"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/api/v1/supervision/alerts/acknowledge", {}, { method: "POST", body: { alert_ids: [alert.alert_id], note: note.value } });
      form.replaceWith(h("span", { class: "ok" }, `已确认：${me.user}`));
    } catch (error) {
      form.append(failure(error));
    }
  });
  return form;
}

// --------------------------------------------------------------------------- deliveries and quarantine

async function deliveriesPage(params) {
  const state = params.state || "dead";
  const form = h("form", { class: "filters", id: "delivery-filters" },
    field("状态", select("state", { dead: "死信", pending: "待投递", inflight: "投递中", delivered: "已投递" }, state)),
    field("目的系统", h("input", { name: "destination", value: params.destination || "" })),
    field("办件编号", h("input", { name: "case_no", value: params.case_no || "" })),
    h("button", { type: "submit" }, "筛选"));
  form.addEventListener("submit", (event) => { event.preventDefault(); setHash("deliveries", formValues(form)); });
  const results = h("div", { id: "delivery-results" }, h("p", { class: "loading" }, "加载中…"));
  const preview = h("div", { id: "preview" });
  page("投递与死信", form, results, preview);
  try {
    const data = await api("/api/v1/deliveries", { state, destination: params.destination, case_no: params.case_no,
      after_id: params.after_id, limit: 100 });
    const replayable = ["dead", "delivered", "pending"].includes(state);
    results.replaceChildren(table([
      ["编号", (d) => d.id], ["目的系统", (d) => d.destination], ["状态", (d) => badge(DELIVERY[d.state] || d.state, `d-${d.state}`)],
      ["尝试次数", (d) => d.attempts], ["办件编号", (d) => caseLink(d.case_no)], ["类型", (d) => KINDS[d.kind] || d.kind],
      ["最后错误", (d) => d.last_error || ""],
      ["操作", (d) => can("deliveries:replay") ? [
        h("button", { class: "preview", onclick: () => showPreview(d, preview) }, "预览"),
        replayable ? h("button", { class: "replay", onclick: (event) => replay(d, event.target) }, "重放") : "",
      ] : ""],
    ], data.items, "没有这个状态的投递。"),
    data.next ? h("button", { class: "more", onclick: () => setHash("deliveries", { ...params, after_id: data.next.after_id }) }, "下一页") : "");
  } catch (error) {
    results.replaceChildren(failure(error));
  }
}

async function showPreview(delivery, target) {
  target.replaceChildren(h("p", { class: "loading" }, "渲染中…"));
  try {
    const data = await api(`/api/v1/deliveries/${delivery.id}/preview`);
    target.replaceChildren(h("h2", {}, `投递 ${delivery.id} 重放时将发送的内容（${data.mapping}，试运行，不发送）`),
      data.renderable ? h("pre", { class: "body" }, data.body) : failure(new Error(`${data.error}：${data.note}`)),
      h("p", { class: "muted" }, data.masked ? "个人信息已脱敏显示；实际发送的是原值。" : "未脱敏（已记入审计）。"));
  } catch (error) {
    target.replaceChildren(failure(error));
  }
}

async function replay(delivery, button) {
  button.disabled = true;
  try {
    const result = await api("/api/v1/deliveries/replay", {}, { method: "POST", body: { ids: [delivery.id], states: [delivery.state] } });
    button.replaceWith(h("span", { class: "ok" }, result.count ? "已重放，等待投递" : "未重放（状态已变化）"));
  } catch (error) {
    button.replaceWith(failure(error));
  }
}

async function quarantinePage(params) {
  const form = h("form", { class: "filters", id: "quarantine-filters" },
    field("状态", select("state", { open: "待处理", resolved: "已解决", discarded: "已作废" }, params.state || "open")),
    field("来源系统", h("input", { name: "system", value: params.system || "" })),
    h("button", { type: "submit" }, "筛选"));
  form.addEventListener("submit", (event) => { event.preventDefault(); setHash("quarantine", formValues(form)); });
  const results = h("div", { id: "quarantine-results" }, h("p", { class: "loading" }, "加载中…"));
  const outcome = h("div", { id: "quarantine-outcome" });
  page("隔离区", form, outcome, results);
  try {
    const data = await api("/api/v1/quarantine", { state: params.state || "open", system: params.system, limit: 100 });
    results.replaceChildren(table([
      ["编号", (q) => q.id], ["来源系统", (q) => q.system], ["类型", (q) => KINDS[q.kind] || q.kind || ""],
      ["接收时间", (q) => fmtTime(q.receipt_time)], ["位置", (q) => q.ref],
      ["原因", (q) => (q.errors || []).map((e) => h("div", {}, `${e.field || ""} ${e.rule || ""}：${e.message || ""}`))],
      ["操作", (q) => can("quarantine:manage") && (q.state || "open") === "open" ? [
        h("button", { onclick: () => reprocess(q, true, outcome) }, "试运行"),
        h("button", { onclick: () => reprocess(q, false, outcome) }, "重新处理"),
      ] : ""],
    ], data.items, "隔离区是空的。"));
  } catch (error) {
    results.replaceChildren(failure(error));
  }
}

async function reprocess(entry, dryRun, target) {
  try {
    const result = await api("/api/v1/quarantine/reprocess", {}, { method: "POST", body: { ids: [entry.id], dry_run: dryRun } });
    target.replaceChildren(h("h2", {}, `${dryRun ? "试运行（未更改）" : "已重新处理"}：条目 ${entry.id}`), h("pre", {}, JSON.stringify(result, null, 2)));
  } catch (error) {
    target.replaceChildren(failure(error));
  }
}

// --------------------------------------------------------------------------- counterpart health

const CIRCUIT = { closed: "正常", open: "熔断（暂停投递）", half_open: "试探恢复中" };

async function healthPage() {
  page("对接系统健康", h("p", { class: "loading" }, "加载中…"));
  let data;
  try {
    data = await api("/api/v1/counterparts/health", {}, { masked: true });
  } catch (error) {
    page("对接系统健康", failure(error));
    return;
  }
  const d = (s) => s.deliveries || {};
  const dash = (v) => (v === null || v === undefined ? "—" : v);
  const outcome = h("div", { id: "health-outcome" });
  page("对接系统健康",
    h("p", { class: "summary" }, `截至 ${fmtTime(data.as_of)}`), outcome,
    table([
      ["系统", (s) => s.system], ["角色", (s) => ({ source: "来源", sink: "目的", "source+sink": "来源与目的" }[s.role] || s.role)],
      ["最近联系", (s) => fmtTime(s.last_contact ? s.last_contact.last_contact : d(s).last_success_at) || "—"],
      ["积压", (s) => dash(d(s).backlog)], ["最早等待", (s) => fmtTime(d(s).oldest_waiting_at) || "—"],
      ["死信", (s) => dash(d(s).dead)], ["被死信阻塞", (s) => d(s).held ? `${d(s).held}（${d(s).held_cases} 件）` : dash(d(s).held)],
      ["失败率", (s) => d(s).error_rate === null || d(s).error_rate === undefined ? "—"
        : `${(d(s).error_rate * 100).toFixed(1)}%（近 ${d(s).error_window_minutes} 分钟）`],
      ["熔断", (s) => d(s).circuit ? badge(CIRCUIT[d(s).circuit] || d(s).circuit, `c-${d(s).circuit}`) : "—"],
      ["最近错误", (s) => d(s).last_error ? `${fmtTime(d(s).last_error_at)} ${d(s).last_error}` : "—"],
      ["待处理隔离", (s) => s.quarantine ?? 0],
      ["对账结果", (s) => reconciliationText(s.reconciliation)],
      ["投递控制", (s) => s.deliveries && can("destinations:manage") ? pauseControl(s.system, d(s), outcome)
        : d(s).paused ? `已暂停（${d(s).paused_by || ""}）` : ""],
    ], data.systems, "尚未配置对接系统。"),
    data.unavailable.length ? h("p", { class: "muted" }, `本网关版本尚未提供：${data.unavailable.map((i) => ({ reconciliation: "对账结果", deliveries: "投递状态", last_contact: "最近联系" }[i] || i)).join("、")}。`) : "");
}

const RECONCILED = { clean: "一致", repaired: "已补齐", gaps: "有差异", unavailable: "对方未应答" };

function reconciliationText(r) {
  if (!r) return "—";
  const gaps = (side) => (r.summary && r.summary[side]
    ? ["missing", "differing", "unexpected"].reduce((n, k) => n + (r.summary[side][k] || 0), 0) : 0);
  const count = gaps("sent") + gaps("received");
  const period = `${(r.period_start || "").slice(0, 10)}～${(r.period_end || "").slice(0, 10)}`;
  return `${RECONCILED[r.outcome] || r.outcome}（${period}${count ? `，差异 ${count} 条` : ""}，${fmtTime(r.finished_at) || "—"}）`;
}

function pauseControl(name, delivery, outcome) {
  const action = delivery.paused ? "resume" : "pause";
  const label = delivery.paused ? `恢复投递（${delivery.paused_by || ""}暂停）` : "暂停投递";
  return h("button", { class: `destination-${action}`, onclick: async (event) => {
    event.target.disabled = true;
    try {
      await api(`/api/v1/destinations/${encodeURIComponent(name)}/${action}`, {}, { method: "POST", body: {} });
      healthPage();
    } catch (error) {
      outcome.replaceChildren(failure(error));
      event.target.disabled = false;
    }
  } }, label);
}

// --------------------------------------------------------------------------- statistics

function monthsAgo(n) {
  const d = new Date();
  d.setMonth(d.getMonth() - n);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

async function statsPage(params) {
  const query = { by: params.by || "month", from: params.from || monthsAgo(11), to: params.to || monthsAgo(0) };
  const form = h("form", { class: "filters", id: "stats-filters" },
    field("起始月份", h("input", { name: "from", type: "month", value: query.from })),
    field("截止月份", h("input", { name: "to", type: "month", value: query.to })),
    field("分组", select("by", { month: "按月份", department: "按部门", item: "按事项" }, query.by)),
    h("button", { type: "submit" }, "统计"));
  form.addEventListener("submit", (event) => { event.preventDefault(); setHash("stats", formValues(form)); });
  const csv = h("a", { class: "button", href: `/api/v1/statistics.csv?${new URLSearchParams(query)}`, download: true }, "导出 CSV");
  const csvGbk = h("a", { class: "button", href: `/api/v1/statistics.csv?${new URLSearchParams({ ...query, encoding: "gb18030" })}`, download: true }, "导出 CSV（GB18030）");
  const chartMonths = h("div", { class: "chart", id: "chart-months" });
  const chartGroups = h("div", { class: "chart", id: "chart-groups" });
  const results = h("div", { id: "stats-results" });
  page("统计报表", form, h("p", {}, csv, " ", csvGbk), chartMonths, chartGroups, results);
  let data;
  try {
    data = await api("/api/v1/statistics", query, { masked: true });
  } catch (error) {
    results.replaceChildren(failure(error));
    return;
  }
  const rate = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);
  results.replaceChildren(table([
    [query.by === "month" ? "月份" : query.by === "department" ? "部门" : "事项", (g) => g.name ? `${g.key} ${g.name}` : g.key || "（未填）"],
    ["受理（申报）", (g) => g.received], ["办结", (g) => g.completed], ["按时办结", (g) => g.on_time],
    ["按时办结率", (g) => rate(g.on_time_rate)], ["超期", (g) => g.overdue], ["补录", (g) => g.backfilled],
  ], data.groups, "这段时间没有办件。"));
  if (typeof echarts === "undefined") return;
  const months = data.months.map((m) => m.key);
  echarts.init(chartMonths).setOption({
    title: { text: "按月受理、办结与按时办结率", left: "center", textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis" }, legend: { top: 24 }, grid: { top: 60, left: 50, right: 50, bottom: 30 },
    xAxis: { type: "category", data: months },
    yAxis: [{ type: "value", name: "件数" }, { type: "value", name: "按时率", min: 0, max: 100, axisLabel: { formatter: "{value}%" } }],
    series: [
      { name: "受理（申报）", type: "bar", data: data.months.map((m) => m.received) },
      { name: "办结", type: "bar", data: data.months.map((m) => m.completed) },
      { name: "超期", type: "bar", data: data.months.map((m) => m.overdue) },
      { name: "补录", type: "bar", data: data.months.map((m) => m.backfilled) },
      { name: "按时办结率", type: "line", yAxisIndex: 1, data: data.months.map((m) => (m.on_time_rate === null ? null : +(m.on_time_rate * 100).toFixed(1))) },
    ],
  });
  if (query.by !== "month") {
    const top = data.groups.slice(0, 20);
    echarts.init(chartGroups).setOption({
      title: { text: query.by === "department" ? "各部门办件量（前 20）" : "各事项办件量（前 20）", left: "center", textStyle: { fontSize: 14 } },
      tooltip: { trigger: "axis" }, legend: { top: 24 }, grid: { top: 60, left: 160, right: 30, bottom: 30 },
      yAxis: { type: "category", data: top.map((g) => g.name || g.key || "（未填）").reverse() },
      xAxis: { type: "value" },
      series: [
        { name: "受理（申报）", type: "bar", data: top.map((g) => g.received).reverse() },
        { name: "办结", type: "bar", data: top.map((g) => g.completed).reverse() },
        { name: "超期", type: "bar", data: top.map((g) => g.overdue).reverse() },
      ],
    });
  } else {
    chartGroups.remove();
  }
}

// --------------------------------------------------------------------------- frame: navigation, who, unmasking

const PAGES = [
  ["cases", "办件查询", "records:read", casesPage],
  ["alerts", "监察预警", "alerts:read", alertsPage],
  ["deliveries", "投递与死信", "deliveries:replay", deliveriesPage],
  ["quarantine", "隔离区", "quarantine:manage", quarantinePage],
  ["health", "对接系统健康", "deliveries:read", healthPage],
  ["stats", "统计报表", "records:read", statsPage],
];

function frame() {
  nav.replaceChildren(...PAGES.filter((p) => can(p[2])).map(([path, title]) => h("a", { href: `#/${path}`, "data-page": path }, title)));
  const logout = h("button", { class: "link", onclick: async () => {
    await api("/api/v1/auth/logout", {}, { method: "POST" }).catch(() => null);
    location.href = "/login";
  } }, "退出");
  const items = [h("span", { id: "user" }, `${me.display_name || me.user}（${ROLES[me.role] || me.role}）`)];
  if (can("personal:unmask")) items.push(unmaskControl());
  who.replaceChildren(...items, logout);
}

function unmaskControl() {
  if (unmask) {
    return h("span", { class: "unmasked" }, `未脱敏查看（理由：${unmask}）`,
      h("button", { class: "link", onclick: () => { unmask = null; frame(); route(); } }, "恢复脱敏"));
  }
  const reason = h("input", { placeholder: "查看个人信息的理由（记入审计）", minlength: 5, maxlength: 500 });
  const form = h("form", { class: "unmask" }, reason, h("button", { type: "submit" }, "查看个人信息"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (reason.value.trim().length < 5) { reason.setCustomValidity("理由至少 5 个字"); reason.reportValidity(); return; }
    unmask = reason.value.trim();
    frame();
    route();
  });
  return form;
}

// While a page loads, <main data-busy> says so (the old page stays up until the new one renders):
// scripts and tests wait for it to go, not for an element the previous page may also have.
let routing = 0;

function route() {
  const mine = ++routing;
  main.dataset.busy = "1";
  Promise.resolve(routeTo()).finally(() => { if (mine === routing) delete main.dataset.busy; });
}

function routeTo() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", path.startsWith(a.dataset.page));
  if (path.startsWith("case/")) return casePage(decodeURIComponent(path.slice(5)));
  const found = PAGES.find((p) => p[0] === path && can(p[2]));
  if (found) return found[3](params);
  const first = PAGES.find((p) => can(p[2]));
  if (first) { location.replace(`#/${first[0]}`); return null; }
  page("没有可用的页面", h("p", {}, "您的角色在控制台中没有可查看的内容。"));
  return null;
}

async function start() {
  try {
    me = await (await fetch("/api/v1/auth/whoami", { credentials: "same-origin" })).json();
  } catch (error) {
    main.replaceChildren(failure(error));
    return;
  }
  if (!me || !me.authenticated) { location.href = "/login"; return; }
  frame();
  window.addEventListener("hashchange", route);
  route();
}

start();
