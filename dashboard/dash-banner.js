// The banner over the dashboard while the box is degraded: which model failed to load, its
// file, why, and how to fix it. It reads /healthz, which answers (503) even when unpaired.
import { el } from "./dash-format.js";

const banner = () => document.getElementById("models-banner");

/** One list item per failed model: the model and its file, the reason, then the fix. */
function failureItem(failure) {
  const item = el("li", null, "model-failure");
  item.dataset.model = failure.model;
  const head = el("p", null, "model-failure-head");
  head.append(el("strong", failure.model.toUpperCase()), " ");
  head.append(el("code", failure.path ?? `default ${failure.model} model (not installed)`));
  item.append(head, el("p", failure.reason, "model-failure-reason"));
  const fix = el("p", "Fix: ", "model-failure-fix");
  fix.append(failure.fix, " (setting ", el("code", failure.setting), ", or ", el("code", failure.environment), ")");
  item.append(fix);
  return item;
}

/** Show or hide the banner from /healthz's models_ready and model_failures. */
export function showModelHealth(health) {
  const node = banner();
  if (health.models_ready !== false) { node.hidden = true; return; }
  const failures = health.model_failures ?? [];
  const count = failures.length === 1 ? "A model" : `${failures.length || "Some"} models`;
  const heading = el("h2", `${count} failed to load: this box cannot answer`);
  const list = el("ul", null, "model-failures");
  list.append(...failures.map(failureItem));
  const retry = el("p", null, "note");
  retry.append(
    `The box looks at these files every ${health.model_retry_s} s and loads them once they change; `,
    el("code", "edgevoice models verify"), " on the box checks them first.",
  );
  node.replaceChildren(heading, list, retry);
  node.hidden = false;
}
