import { ApiError, api, describe, showNotice, signIn, signOut, start } from "./console.js";

// Only a console path may follow the login: never another site.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/console\/[^/\\]/.test(next) && !next.startsWith("/console/login")
    ? next : "/console/sessions";
}

start(async () => {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(form.elements.api_key.value.trim());
    try {
      await api("/v1/sessions?limit=1", { keepKey: true });
    } catch (error) {
      signOut();
      const invalid = error instanceof ApiError && error.status === 401;
      showNotice(invalid ? "That key is not valid." : describe(error));
      return;
    }
    location.assign(nextPage());
  });
});
