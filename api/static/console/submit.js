import { api, describe, el, showNotice, start } from "./console.js";

// An Idempotency-Key per submission: a request the network retries creates one session.
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

start(async () => {
  const form = document.getElementById("ask-form");
  const members = document.getElementById("members");
  const chairman = document.getElementById("chairman");
  const { data } = await api("/v1/models");
  for (const model of data.data) {
    const box = el("input", { type: "checkbox", name: "members", value: model.id });
    box.checked = model.default_member;
    members.append(el("label", { className: "choice" }, box, ` ${model.name} `,
                      el("span", { className: "muted small" }, model.id)));
    const option = el("option", { value: model.id }, model.name);
    option.selected = model.default_chairman;
    chairman.append(option);
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("ask");
    const body = {
      question: form.elements.question.value,
      members: Array.from(form.querySelectorAll("input[name=members]:checked"), (b) => b.value),
      chairman: chairman.value,
    };
    const title = form.elements.title.value.trim();
    if (title) body.title = title;
    button.disabled = true;
    showNotice("");
    try {
      const { data: session } = await api("/v1/sessions", {
        method: "POST", body, headers: { "Idempotency-Key": idempotencyKey() } });
      location.assign("/console/sessions/" + encodeURIComponent(session.id));
    } catch (error) {
      showNotice(describe(error));
      button.disabled = false;
    }
  });
});
