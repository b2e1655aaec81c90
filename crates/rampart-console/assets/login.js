"use strict";
// The login page: posts the form as JSON; the server sets an HttpOnly session cookie.
(function () {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = JSON.stringify({
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    });
    try {
      const r = await fetch("/ui/api/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        credentials: "same-origin",
        body,
      });
      if (r.ok) {
        location.replace("/ui/#/overview");
        return;
      }
      let msg = "login failed (" + r.status + ")";
      try {
        const j = await r.json();
        if (j && j.error) msg = j.error;
      } catch (_) { /* not JSON */ }
      error.textContent = msg;
    } catch (err) {
      error.textContent = "the server did not answer: " + err;
    }
  });
})();
